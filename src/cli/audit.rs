use super::error::CmdResult;
use super::{Ctx, parse_since, print_json, ts};
use hyperion::tui::shown_line;

/// Every transition of every request, oldest first.
///
/// One line per event: time, request, action, from -> to, actor, reason. The same facts are
/// in the chains: `git log refs/hyperion/requests/ID`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only events at or after T (RFC 3339, a date, or an age such as 2h).
    #[arg(long, value_name = "T")]
    since: Option<String>,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let events = ctx.queue()?.audit(since)?;
    if ctx.json() {
        let rows: Vec<_> = events
            .iter()
            .map(|(id, h)| {
                let mut v = serde_json::to_value(h).expect("serialises");
                v["request"] = id.clone().into();
                v
            })
            .collect();
        print_json(&rows);
        return Ok(());
    }
    for (id, h) in &events {
        let e = &h.event;
        let from = e.from.map(|s| s.as_str()).unwrap_or("-");
        let mut line = format!(
            "{}  {id}  {:<9} {from} -> {}  {}",
            ts(e.at),
            e.action.as_str(),
            e.to,
            e.actor
        );
        if let Some(r) = &e.reason {
            line.push_str(&format!("  ({r})"));
        }
        // Reasons are free text, some from other machines' records.
        println!("{}", shown_line(&line));
    }
    Ok(())
}
