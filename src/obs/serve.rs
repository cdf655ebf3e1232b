//! The `/metrics` endpoint of a running worker: a tiny HTTP/1.0-style server on a thread of
//! its own (std::net, no async runtime). It answers `GET /metrics` with the exposition and
//! closes the connection; anything else gets a short error status. What a client sends is
//! read with a deadline and a size bound, and only its request line is looked at.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::metrics::{CONTENT_TYPE, WorkerMetrics};

/// How long one client may take to send its request, and to read the answer.
const CLIENT_DEADLINE: Duration = Duration::from_secs(2);
/// The most of a request read (its request line and headers).
const MAX_REQUEST: usize = 8 * 1024;

/// Why an address for `--metrics-addr` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddrError {
    #[error("`{0}` is not a port or an address with a port (like 9184, :9184, 127.0.0.1:9184)")]
    Invalid(String),
    #[error(
        "`{0}` is not a loopback address: /metrics would be open to the network (allow it with --metrics-public)"
    )]
    NotLoopback(SocketAddr),
}

/// The address to serve on: a bare port (`9184`, `:9184`) means loopback; an address that
/// is not loopback is refused unless `public`.
pub fn parse_addr(text: &str, public: bool) -> Result<SocketAddr, AddrError> {
    let invalid = || AddrError::Invalid(text.to_owned());
    let port_only = text.strip_prefix(':').unwrap_or(text);
    let addr = if let Ok(port) = port_only.parse::<u16>() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    } else {
        text.parse::<SocketAddr>().map_err(|_| invalid())?
    };
    if !public && !addr.ip().is_loopback() {
        return Err(AddrError::NotLoopback(addr));
    }
    Ok(addr)
}

/// A server running on its own thread; it lives as long as the process.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
}

impl Server {
    /// Bind `addr` and serve `metrics` on a new thread.
    pub fn start(addr: SocketAddr, metrics: Arc<WorkerMetrics>) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        std::thread::Builder::new()
            .name("hyperion-metrics".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    match stream {
                        Ok(s) => {
                            if let Err(e) = answer(s, &metrics) {
                                tracing::debug!(error = %e, "a metrics client went away");
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "could not accept a metrics client"),
                    }
                }
            })?;
        Ok(Server { addr })
    }

    /// The address bound (with the port the system chose, when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn answer(mut stream: TcpStream, metrics: &WorkerMetrics) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_DEADLINE))?;
    stream.set_write_timeout(Some(CLIENT_DEADLINE))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    // Up to the end of the headers, the size bound or the deadline.
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let (status, body, kind) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => ("200 OK", metrics.encode(), CONTENT_TYPE),
        (Some(b"GET"), Some(_)) => (
            "404 Not Found",
            "only /metrics is served\n".to_owned(),
            "text/plain",
        ),
        _ => (
            "405 Method Not Allowed",
            "only GET /metrics is served\n".to_owned(),
            "text/plain",
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_means_loopback() {
        assert_eq!(
            parse_addr("9184", false),
            Ok("127.0.0.1:9184".parse().expect("addr"))
        );
        assert_eq!(
            parse_addr(":0", false),
            Ok("127.0.0.1:0".parse().expect("addr"))
        );
        assert_eq!(
            parse_addr("[::1]:9184", false),
            Ok("[::1]:9184".parse().expect("addr"))
        );
    }

    #[test]
    fn a_public_address_is_refused_unless_asked_for() {
        assert!(matches!(
            parse_addr("0.0.0.0:9184", false),
            Err(AddrError::NotLoopback(_))
        ));
        assert!(matches!(
            parse_addr("192.0.2.1:9184", false),
            Err(AddrError::NotLoopback(_))
        ));
        assert!(parse_addr("0.0.0.0:9184", true).is_ok());
        assert!(matches!(
            parse_addr("localhost:x", false),
            Err(AddrError::Invalid(_))
        ));
        assert!(matches!(
            parse_addr("70000", false),
            Err(AddrError::Invalid(_))
        ));
    }
}
