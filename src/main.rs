//! `git-hyperion`: the binary behind `git hyperion …`.

mod cli;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose, cli.log_format);
    let json = cli.format == cli::Format::Json;
    let code = match cli::run(cli) {
        Ok(()) => 0,
        Err(e) => {
            e.render(json);
            e.exit_code()
        }
    };
    std::process::exit(code);
}

/// Quiet by default (warnings only); `-v` for lifecycle steps, `--log-format json` for JSON
/// lines. `HYPERION_LOG` (an env-filter-like level) overrides the level.
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
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        cli::LogFormat::Json => builder.json().with_current_span(true).init(),
        cli::LogFormat::Text => builder.with_ansi(false).init(),
    }
}
