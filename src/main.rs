//! `git-hyperion`: the binary behind `git hyperion …`.

mod cli;

fn main() {
    quiet_on_broken_pipe();
    let cli = cli::parse();
    init_logging(cli.verbose, cli.log_format);
    let json = cli.format == cli::Format::Json;
    let code = match cli::run(cli) {
        Ok(()) => 0,
        Err(e) => {
            e.render(json);
            e.exit_code()
        }
    };
    // A repack started in the background (many small packs) ends with the command; a
    // command that worked in chunks leaves one pack.
    hyperion::git::pack::finish_roll_up(hyperion::queue::store::chunk());
    std::process::exit(code);
}

/// Quiet by default (warnings only); `-v` for lifecycle steps, `--log-format json` for JSON
/// lines. `HYPERION_LOG` (an env-filter-like level) overrides the level. Every line is
/// redacted: nothing that looks like a secret reaches a log.
fn init_logging(verbose: u8, format: cli::LogFormat) {
    use tracing::Level;
    let level = match std::env::var("HYPERION_LOG").ok().as_deref() {
        Some("error") => Level::ERROR,
        Some("warn") => Level::WARN,
        Some("info") => Level::INFO,
        Some("debug") => Level::DEBUG,
        Some("trace") => Level::TRACE,
        _ => match verbose {
            0 => Level::WARN,
            1 => Level::INFO,
            2 => Level::DEBUG,
            _ => Level::TRACE,
        },
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(|| hyperion::request::secrets::Redacting(std::io::stderr()))
        .with_target(false);
    match format {
        cli::LogFormat::Json => builder.json().with_current_span(true).init(),
        cli::LogFormat::Text => builder.with_ansi(false).init(),
    }
}

/// `git hyperion list | head`: when the reader goes away, stop quietly as a process killed by
/// SIGPIPE would (status 141), instead of reporting a panic from `println!`.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}
