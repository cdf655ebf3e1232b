use hyperion::Code;
use hyperion::agents::harness::Totals;
use hyperion::agents::provider::Event;

use super::error::{CmdResult, CommandError};
use super::{Ctx, print_json, ts};

/// Show the transcript of the agent run that made a request: every event with its time
/// (redacted before it was stored), and what the run spent.
///
/// With --format json, prints the events as one JSON array, the totals last.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The request id (or a unique prefix).
    id: String,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let q = ctx.queue()?;
    let Some((id, lines)) = hyperion::agents::run::transcript(q, &args.id)? else {
        return Err(CommandError::refused(
            Code::AgentNoTranscript,
            format!("request {} has no transcript", args.id),
        )
        .hint("only requests made by `git hyperion run` carry one (artifacts/transcript.jsonl)"));
    };
    if ctx.json() {
        print_json(&lines);
        return Ok(());
    }
    println!("transcript of {id}");
    for s in &lines {
        let what = match &s.event {
            Event::Message { text } => format!("message   {}", one_line(text)),
            Event::ToolUse { name, detail } => format!("tool      {name} {}", one_line(detail)),
            Event::Usage {
                input,
                output,
                total,
            } => format!(
                "usage     {input} in, {output} out{}",
                if *total { " (running total)" } else { "" }
            ),
            Event::Cost { usd, total } => format!(
                "cost      ${usd:.4}{}",
                if *total { " (running total)" } else { "" }
            ),
            Event::Error { message, class } => format!(
                "error     {}{}",
                class
                    .map(|c| format!("[{}] ", c.as_str()))
                    .unwrap_or_default(),
                one_line(message)
            ),
            Event::Result { ok, text, class } => format!(
                "result    {}{} {}",
                if *ok { "ok" } else { "failed" },
                class
                    .map(|c| format!(" [{}]", c.as_str()))
                    .unwrap_or_default(),
                one_line(text)
            ),
            Event::Start { provider, program } => format!("start     {provider} ({program})"),
            Event::Stop { class, reason } => format!("stop      [{}] {reason}", class.as_str()),
            Event::End {
                status,
                class,
                stderr,
            } => format!(
                "end       status {}{}{}",
                status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                class
                    .map(|c| format!(" [{}]", c.as_str()))
                    .unwrap_or_default(),
                if stderr.is_empty() {
                    String::new()
                } else {
                    format!(" stderr: {}", one_line(stderr))
                }
            ),
            Event::Retry { after_ms } => format!("retry     after {after_ms} ms"),
            Event::Redacted { count } => format!("redacted  {count} match(es) in the prompt"),
            Event::Totals(t) => format!("totals    {} ({})", summary(t), t.outcome),
        };
        println!("{} #{} {what}", ts(s.at), s.attempt);
    }
    Ok(())
}

/// `N tokens, $X, N attempt(s), Ns`.
pub fn summary(t: &Totals) -> String {
    let usd = t.usd.map(|u| format!(", ${u:.4}")).unwrap_or_default();
    format!(
        "{} tokens{usd}, {} attempt(s), {:.1}s",
        t.tokens(),
        t.attempts,
        t.wall_ms as f64 / 1000.0
    )
}

fn one_line(s: &str) -> String {
    let mut out: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > 200 {
        let mut cut = 200;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}
