use hyperion::queue::Outcome;
use hyperion::request::model::{DeadClass, ErrorInfo};

use super::error::{CmdResult, CommandError};
use super::{Ctx, print_json};

/// Record the outcome of a leased request (plumbing for external workers).
///
/// `--landed COMMIT` marks it applied; `--failed CODE --class C --message TEXT` marks it
/// failed: retried with backoff if `--transient` and attempts remain, else a dead letter.
/// Only the lease owner may complete a request.
#[derive(clap::Args, Debug)]
pub struct Args {
    id: String,
    /// The worker that holds the lease.
    #[arg(long, value_name = "W")]
    worker: String,
    /// The commit the request landed as.
    #[arg(
        long,
        value_name = "COMMIT",
        conflicts_with = "failed",
        required_unless_present = "failed"
    )]
    landed: Option<String>,
    /// Error code of the failure.
    #[arg(long, value_name = "CODE", requires = "class")]
    failed: Option<String>,
    /// Dead-letter class: validation, apply, check.
    #[arg(long, value_name = "C")]
    class: Option<String>,
    /// What went wrong, for a person.
    #[arg(long, default_value = "")]
    message: String,
    /// The failure may pass on retry.
    #[arg(long)]
    transient: bool,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let outcome = match (args.landed, args.failed) {
        (Some(commit), _) => {
            if commit.len() < 7 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(CommandError::usage(format!(
                    "'{commit}' is not a commit id"
                )));
            }
            Outcome::Applied {
                commit,
                artifacts: Vec::new(),
            }
        }
        (None, Some(code)) => {
            let c = args.class.as_deref().unwrap_or_default();
            let class = DeadClass::parse(c)
                .filter(|c| !matches!(c, DeadClass::Lease | DeadClass::Rejected))
                .ok_or_else(|| {
                    CommandError::usage(format!("unknown class '{c}'"))
                        .hint("use validation, apply or check")
                })?;
            Outcome::Failed {
                class,
                error: ErrorInfo {
                    code,
                    message: args.message,
                },
                transient: args.transient,
                artifacts: Vec::new(),
            }
        }
        (None, None) => return Err(CommandError::usage("pass --landed COMMIT or --failed CODE")),
    };
    let r = super::remote::held_transition(ctx, &args.id, &args.worker, |q, id| {
        q.complete(id, &args.worker, outcome)
    })?;
    if ctx.json() {
        print_json(&r);
    } else {
        println!("{} is {}", r.id, r.status);
    }
    Ok(())
}
