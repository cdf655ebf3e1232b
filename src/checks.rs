//! Placeholder until the check runner lands.
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub struct CheckCommand {
    pub name: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
}
#[derive(Clone, Copy)]
pub struct OutputLimit {
    pub bytes: usize,
}
impl Default for OutputLimit {
    fn default() -> Self {
        OutputLimit { bytes: 64 << 10 }
    }
}
#[derive(Debug, Clone)]
pub enum CheckStatus {
    Passed,
    Failed {
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    TimedOut,
    Cancelled,
    SpawnFailed(String),
}
pub struct Captured {
    pub tail: Vec<u8>,
    pub total_bytes: u64,
    pub truncated: bool,
}
pub struct CheckResult {
    pub name: String,
    pub status: CheckStatus,
    pub duration: Duration,
    pub stdout: Captured,
    pub stderr: Captured,
}
pub fn run(
    cmd: &CheckCommand,
    _cwd: &Path,
    _limit: OutputLimit,
    _cancel: &AtomicBool,
    _tick: &mut dyn FnMut(),
) -> CheckResult {
    let empty = || Captured {
        tail: Vec::new(),
        total_bytes: 0,
        truncated: false,
    };
    CheckResult {
        name: cmd.name.clone(),
        status: CheckStatus::SpawnFailed("not built yet".into()),
        duration: Duration::ZERO,
        stdout: empty(),
        stderr: empty(),
    }
}
