use hyperion::gate::inspect::{Inspection, inspect};
use hyperion::tui::shown;

use super::error::CmdResult;
use super::{Ctx, print_json, ts};

/// Show everything stored about one request, for deep debugging.
///
/// Every transition of its chain (oldest first) with the record each one left, the request
/// and its patches, every artifact at the chain's tip with its content (check output,
/// conflict reports, merged files; each cut at 64 KiB), the landed commit and its note, what
/// the derived index holds for it, and the findings of `doctor`'s chain checks for this
/// chain. Reads only. ID may be a unique prefix of at least 4 digits.
///
/// In text, control characters from the request or its artifacts are shown escaped
/// (`\x1b`), never sent to the terminal; `--format json` gives them as stored.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The request id (or a unique prefix).
    id: String,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let found = inspect(ctx.queue()?, &args.id)?;
    if ctx.json() {
        print_json(&found);
    } else {
        print!("{}", text(&found));
    }
    Ok(())
}

fn text(i: &Inspection) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let r = &i.record;
    let _ = writeln!(o, "request   {}", i.id);
    let _ = writeln!(o, "ref       {} ({})", i.reference, &i.tip[..12]);
    match r.dead_class {
        Some(c) => {
            let _ = writeln!(o, "status    {} ({c})", r.status);
        }
        None => {
            let _ = writeln!(o, "status    {}", r.status);
        }
    }
    let _ = writeln!(o, "task      {}", shown(&r.task_id));
    let _ = writeln!(o, "agent     {}", shown(&r.agent));
    let _ = writeln!(o, "title     {}", shown(&r.title));
    let _ = writeln!(o, "attempts  {}", r.attempts);
    if let Some(e) = &r.error {
        let _ = writeln!(o, "error     [{}] {}", e.code, shown(&e.message));
    }

    let _ = writeln!(o, "\nchain ({} commits, oldest first):", i.chain.len());
    for l in &i.chain {
        let e = &l.item.event;
        let from = e.from.map(|s| s.as_str()).unwrap_or("-");
        let _ = write!(
            o,
            "  {}  {}  {:<9} {from} -> {}  {}",
            &l.item.commit[..12],
            ts(e.at),
            e.action.as_str(),
            e.to,
            shown(&e.actor)
        );
        if let Some(code) = &e.code {
            let _ = write!(o, "  [{}]", shown(code));
        }
        if let Some(reason) = &e.reason {
            let _ = write!(o, "  ({})", shown(reason));
        }
        o.push('\n');
        match &l.record {
            Some(rec) => {
                let _ = writeln!(
                    o,
                    "      record: {} attempts {}{}",
                    rec.status,
                    rec.attempts,
                    rec.lease_owner
                        .as_deref()
                        .map(|w| format!(" lease {}", shown(w)))
                        .unwrap_or_default()
                );
            }
            None => o.push_str("      record: unreadable\n"),
        }
    }

    let req = &i.request;
    let _ = writeln!(
        o,
        "\nrequest: {} change(s), targets {}, checks {}",
        req.changes.len(),
        shown(&req.file_targets.join(", ")),
        if req.checks.is_empty() {
            "none".to_owned()
        } else {
            shown(&req.checks.join(", "))
        }
    );
    for c in &req.changes {
        let op = serde_json::to_value(c.operation).expect("an operation serialises");
        let _ = writeln!(o, "--- {} ({})", shown(&c.path), op.as_str().unwrap_or("?"));
        o.push_str(&shown(&c.patch));
        if !c.patch.ends_with('\n') {
            o.push('\n');
        }
    }

    if i.artifacts.is_empty() {
        o.push_str("\nartifacts: none\n");
    } else {
        let _ = writeln!(o, "\nartifacts ({}):", i.artifacts.len());
        for a in &i.artifacts {
            let cut = if a.cut { ", cut" } else { "" };
            let _ = writeln!(o, "=== {} ({} bytes{cut})", shown(&a.name), a.size);
            o.push_str(&shown(&a.text));
            if !a.text.ends_with('\n') {
                o.push('\n');
            }
        }
    }

    match &i.landed {
        Some(l) => {
            let present = if l.present {
                ""
            } else {
                " (not in this repository)"
            };
            let _ = writeln!(o, "\nlanded as {}{present}", l.commit);
            match &l.note {
                Some(n) => {
                    o.push_str("note:\n");
                    for line in n.lines() {
                        let _ = writeln!(o, "  {}", shown(line));
                    }
                }
                None => o.push_str("note: none\n"),
            }
        }
        None => o.push_str("\nlanded: no\n"),
    }

    match (&i.index.tip, i.index.status) {
        (Some(t), Some(s)) => {
            let agree = if i.index.agrees {
                "agrees with the ref"
            } else {
                "differs from the ref: the next command reconciles it"
            };
            let _ = writeln!(o, "\nindex: {} {s} ({agree})", &t[..t.len().min(12)]);
        }
        _ => o.push_str("\nindex: no entry (or busy)\n"),
    }

    if i.findings.is_empty() {
        o.push_str("findings: none\n");
    } else {
        o.push_str("findings:\n");
        for f in &i.findings {
            let _ = writeln!(o, "  [{}] {}", f.code, shown(&f.message));
        }
    }
    o
}
