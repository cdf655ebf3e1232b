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
/// lines. `HYPERION_LOG` overrides `-v` with tracing's env-filter directives: a level
/// (`debug`), or levels by module (`warn,hyperion::queue=debug`); a value it cannot parse is
/// reported and `-v`'s level used. Every line is redacted: nothing that looks like a secret
/// reaches a log.
fn init_logging(verbose: u8, format: cli::LogFormat) {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter};
    let level = match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let filter = match std::env::var("HYPERION_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            match EnvFilter::builder().parse(&directives) {
                Ok(filter) => filter,
                Err(e) => {
                    // Redacted like every log line, in case `e` quotes what was given.
                    let warning = format!(
                        "warning: HYPERION_LOG: {e}; logging at {level}\nhint: a level (error, warn, info, debug, trace) or directives such as 'warn,hyperion::queue=debug'"
                    );
                    eprintln!("{}", hyperion::request::secrets::redact(&warning));
                    EnvFilter::new(level.to_string())
                }
            }
        }
        _ => EnvFilter::new(level.to_string()),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
