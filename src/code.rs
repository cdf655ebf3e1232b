//! The stable error codes: every code the program can emit, as a type.
//!
//! A code is what scripts match on (`error.code`, `problems[].code`, a dead letter's
//! `error.code`, a worker's report, `doctor`'s findings); messages and hints may change
//! wording, codes do not. docs/errors.md is the catalogue for users, with each code's class,
//! exit status and what to do; a test holds it and [`Code::ALL`] to each other in both
//! directions, so a new variant needs its row there.
//!
//! Shared vocabulary: this module imports nothing of the crate.

use serde::Serialize;

macro_rules! codes {
    ($($variant:ident = $code:literal,)*) => {
        /// A stable error code; [`Code::as_str`] is its dotted name (`request.unknown_field`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $(#[doc = concat!("`", $code, "`")] $variant,)*
        }

        impl Code {
            /// Every code, in the order of docs/errors.md.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as scripts see it: `request.unknown_field`, `usage`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }
        }
    };
}

codes! {
    RequestJsonSyntax = "request.json_syntax",
    RequestUnknownField = "request.unknown_field",
    RequestMissingField = "request.missing_field",
    RequestInvalidValue = "request.invalid_value",
    RequestEmptyChanges = "request.empty_changes",
    RequestSchemaVersion = "request.schema_version",
    TargetNotBranch = "target.not_branch",
    TargetInvalid = "target.invalid",
    TargetMissing = "target.missing",
    RequestArchived = "request.archived",
    RequestDependencyUnknown = "request.dependency_unknown",
    RequestDependencyCycle = "request.dependency_cycle",
    RequestDependencyTarget = "request.dependency_target",
    RequestDependencyDead = "request.dependency_dead",
    RequestDependencyInvalid = "request.dependency_invalid",
    RequestDuplicatePath = "request.duplicate_path",
    RequestSha256Mismatch = "request.sha256_mismatch",
    RequestPathMismatch = "request.path_mismatch",
    RequestOperationMismatch = "request.operation_mismatch",
    PatchNotADiff = "patch.not_a_diff",
    PatchBadHeader = "patch.bad_header",
    PatchInconsistentPaths = "patch.inconsistent_paths",
    PatchCopy = "patch.copy",
    PatchMissingHeader = "patch.missing_header",
    PatchBadHunkHeader = "patch.bad_hunk_header",
    PatchHunkCount = "patch.hunk_count",
    PatchEmpty = "patch.empty",
    PatchMultipleFiles = "patch.multiple_files",
    PatchBadMode = "patch.bad_mode",
    PatchMinContext = "patch.min_context",
    PatchNotUtf8 = "patch.not_utf8",
    LimitFiles = "limit.files",
    LimitChangeBytes = "limit.change_bytes",
    LimitRequestBytes = "limit.request_bytes",
    LimitFileBytes = "limit.file_bytes",
    LimitFileLines = "limit.file_lines",
    LimitInflatedBytes = "limit.inflated_bytes",
    PathUnsafe = "path.unsafe",
    PathTooLong = "path.too_long",
    PathOutsideFileTargets = "path.outside_file_targets",
    PathThroughLink = "path.through_link",
    PathDenied = "path.denied",
    PathGitlink = "path.gitlink",
    PathSymlinkEscape = "path.symlink_escape",
    PathSymlinkLoop = "path.symlink_loop",
    SecretDetected = "secret.detected",
    CheckUnknown = "check.unknown",
    CheckInlineRefused = "check.inline_refused",
    OperationExists = "operation.exists",
    OperationMissing = "operation.missing",
    RequestInvalid = "request.invalid",
    PatchBinaryNoData = "patch.binary_no_data",
    PatchBinaryCorrupt = "patch.binary_corrupt",
    PatchBinaryMismatch = "patch.binary_mismatch",
    IngestBadRef = "ingest.bad_ref",
    IngestNoAgent = "ingest.no_agent",
    IngestBadTrailer = "ingest.bad_trailer",
    IngestUnrelated = "ingest.unrelated",
    IngestEmpty = "ingest.empty",
    ApplyConflict = "apply.conflict",
    WatchUnreadable = "watch.unreadable",
    WatchRejected = "watch.rejected",
    RequestNotFound = "request.not_found",
    RequestAmbiguousId = "request.ambiguous_id",
    QueueWrongState = "queue.wrong_state",
    QueueNotOwner = "queue.not_owner",
    QueueConflict = "queue.conflict",
    ApprovalNotAllowed = "approval.not_allowed",
    ApprovalNoApprovers = "approval.no_approvers",
    ApprovalRequired = "approval.required",
    ApprovalRejected = "approval.rejected",
    StoreCorrupt = "store.corrupt",
    StoreIncomplete = "store.incomplete",
    StoreGcIncomplete = "store.gc_incomplete",
    StoreStaleLock = "store.stale_lock",
    StoreStaleKeep = "store.stale_keep",
    StoreMissingObject = "store.missing_object",
    DoctorProblems = "doctor.problems",
    LandInProgress = "land.in_progress",
    LandInterrupted = "land.interrupted",
    LandIndexLock = "land.index_lock",
    LeaseExpired = "lease.expired",
    ChainBadRef = "chain.bad_ref",
    ChainUnreadable = "chain.unreadable",
    ChainWrongId = "chain.wrong_id",
    ChainIllegalTransition = "chain.illegal_transition",
    ChainPayloadChanged = "chain.payload_changed",
    ChainFieldChanged = "chain.field_changed",
    ChainRecordMismatch = "chain.record_mismatch",
    ChainBadLease = "chain.bad_lease",
    ChainTime = "chain.time",
    ChainSecret = "chain.secret",
    ChainLanded = "chain.landed",
    ChainRolledBack = "chain.rolled_back",
    PushRewritesHistory = "push.rewrites_history",
    PushDeleteUnfinished = "push.delete_unfinished",
    PushNotes = "push.notes",
    RemoteMissing = "remote.missing",
    RemoteUnreachable = "remote.unreachable",
    RemoteConflict = "remote.conflict",
    RemoteRejected = "remote.rejected",
    RemoteDiverged = "remote.diverged",
    RemoteForged = "remote.forged",
    PolicyInvalid = "policy.invalid",
    PolicySyntax = "policy.syntax",
    PolicyUnknownKey = "policy.unknown_key",
    PolicyInvalidValue = "policy.invalid_value",
    ConfigInvalid = "config.invalid",
    AgentPlanInvalid = "agent.plan_invalid",
    AgentProviderUnknown = "agent.provider_unknown",
    AgentFailed = "agent.failed",
    AgentNoTranscript = "agent.no_transcript",
    EnvGit = "env.git",
    EnvRefStorage = "env.ref_storage",
    EnvIo = "env.io",
    Usage = "usage",
    ApplyDoesNotApply = "apply.does_not_apply",
    ApplyMissing = "apply.missing",
    ApplyExists = "apply.exists",
    ApplyBinary = "apply.binary",
    ApplyEmpty = "apply.empty",
    ApplyBadPatch = "apply.bad_patch",
    HookRefused = "hook.refused",
    CheckFailed = "check.failed",
    CheckTimeout = "check.timeout",
    LimitHunkSearch = "limit.hunk_search",
    CheckSpawn = "check.spawn",
    LandWorktreeDirty = "land.worktree_dirty",
    LandWorktreeUpdate = "land.worktree_update",
    LandMoved = "land.moved",
    LandBusy = "land.busy",
    LandWorktreeLocked = "land.worktree_locked",
    ApplyFailed = "apply.failed",
    WorkerLeaseLost = "worker.lease_lost",
    RollbackNotApplied = "rollback.not_applied",
    RollbackNotOnTarget = "rollback.not_on_target",
    RollbackConflict = "rollback.conflict",
    RollbackAlreadyReverted = "rollback.already_reverted",
    RollbackNothing = "rollback.nothing",
    TaskJsonSyntax = "task.json_syntax",
    TaskUnknownField = "task.unknown_field",
    TaskMissingField = "task.missing_field",
    TaskInvalidValue = "task.invalid_value",
    TaskSchemaVersion = "task.schema_version",
    PlanScopeEmpty = "plan.scope_empty",
    PlanFileTooLarge = "plan.file_too_large",
    PlanInstructionsTooLarge = "plan.instructions_too_large",
    PlanTemplateInvalid = "plan.template_invalid",
    PlanTemplateLimit = "plan.template_limit",
    PlanCodeownersTooLarge = "plan.codeowners_too_large",
}

impl Code {
    /// The code named `name`, if it is one of ours.
    pub fn parse(name: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str() == name)
    }
}

/// Codes sort by name, as the strings they were sort.
impl Ord for Code {
    fn cmp(&self, other: &Code) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Code {
    fn partial_cmp(&self, other: &Code) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl From<Code> for String {
    fn from(code: Code) -> String {
        code.as_str().to_owned()
    }
}

impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::Code;

    #[test]
    fn names_are_unique_and_dotted_lower_case() {
        let mut seen = std::collections::BTreeSet::new();
        for code in Code::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "{name} twice");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'.'
                    || b == b'_'),
                "{name}"
            );
            assert_eq!(Code::parse(name), Some(*code));
        }
    }

    #[test]
    fn serializes_as_its_name() {
        assert_eq!(
            serde_json::to_string(&Code::RequestUnknownField).unwrap(),
            r#""request.unknown_field""#
        );
        assert_eq!(Code::WorkerLeaseLost.to_string(), "worker.lease_lost");
    }
}
