//! Reading a task request: JSON syntax, `schemas/task-request.schema.json` (JSON Schema 2020-12,
//! validated as change requests are, see [`crate::request::schema`]), then what a schema
//! cannot say (durations and deadlines that parse, a target that is a branch name, scope
//! globs that stay inside the tree). Every problem is reported, each with a stable `task.*`
//! code and the field it concerns; nothing is read from the repository here.

use serde_json::Value;

use crate::agents::model::{TASK_SCHEMA_V1, TaskRequest};
use crate::code::Code;
use crate::error::Problem;
use crate::request::schema::{Rule, Rules, Schema, cleaned, quoted};

/// The schema, as shipped in `schemas/task-request.schema.json`.
pub const SCHEMA_TEXT: &str = include_str!("../../schemas/task-request.schema.json");

/// The largest task file read (the instructions are at most 64 KiB, scope 1000 globs).
pub const MAX_TASK_BYTES: usize = 8 << 20;

const HINT: &str = "see schemas/task-request.schema.json for the fields and their values";

/// The validator of `schemas/task-request.schema.json`, generated at build time.
#[jsonschema::validator(path = "schemas/task-request.schema.json", methods = { is_valid = false, validate = false })]
struct Generated;

/// The task request's schema, read as a change request's is
/// ([`crate::request::schema`]), with the `task.*` codes.
static SCHEMA: Schema = Schema::new(
    Generated::iter_errors,
    TASK_SCHEMA_V1,
    Rules {
        unknown_field: Rule {
            code: Code::TaskUnknownField,
            hint: "remove the field; format v1 accepts only the fields in schemas/task-request.schema.json",
        },
        missing_field: Rule {
            code: Code::TaskMissingField,
            hint: HINT,
        },
        schema_version: Rule {
            code: Code::TaskSchemaVersion,
            hint: "set \"schema\": \"hyperion.task-request/v1\"",
        },
        invalid_value: Rule {
            code: Code::TaskInvalidValue,
            hint: HINT,
        },
    },
    Schema::no_special,
);

/// Parse and check one task request. `Err` carries every problem found.
pub fn parse(bytes: &[u8]) -> Result<TaskRequest, Vec<Problem>> {
    if bytes.len() > MAX_TASK_BYTES {
        return Err(vec![Problem::new(
            Code::TaskInvalidValue,
            format!(
                "the task is {} bytes, more than the {} a task may have",
                bytes.len(),
                MAX_TASK_BYTES
            ),
            "keep the instructions short and point at files in the scope instead",
        )]);
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        vec![
            Problem::new(
                Code::TaskJsonSyntax,
                format!("not valid JSON: {e}"),
                "a task is one JSON object (see schemas/task-request.schema.json)",
            )
            .line(e.line()),
        ]
    })?;
    check_value(&value)
}

/// [`parse`] for an already parsed value.
pub fn check_value(value: &Value) -> Result<TaskRequest, Vec<Problem>> {
    let mut problems = SCHEMA.problems(value);
    if !problems.is_empty() {
        problems.sort_by(|a, b| a.field.cmp(&b.field).then(a.code.cmp(&b.code)));
        problems.dedup();
        return Err(problems);
    }
    let task: TaskRequest = serde_json::from_value(value.clone()).map_err(|e| {
        vec![Problem::new(
            Code::TaskInvalidValue,
            cleaned(&e.to_string()),
            "deadlines are RFC 3339 timestamps such as 2026-12-24T18:00:00Z",
        )]
    })?;
    let problems = semantic_problems(&task);
    if problems.is_empty() {
        Ok(task)
    } else {
        Err(problems)
    }
}

fn semantic_problems(task: &TaskRequest) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(sla) = &task.sla
        && let Some(within) = &sla.within
        && let Err(why) = crate::duration::parse(within)
    {
        out.push(
            Problem::new(
                Code::TaskInvalidValue,
                why,
                "write the duration as 30m, 2h or 3d",
            )
            .at("/sla/within"),
        );
    }
    if let Some(wall) = &task.budget.wall_time
        && let Err(why) = crate::duration::parse(wall)
    {
        out.push(
            Problem::new(
                Code::TaskInvalidValue,
                why,
                "write the duration as 30m, 2h or 3d",
            )
            .at("/budget/wall_time"),
        );
    }
    if let Some(target) = &task.target
        && let Err(p) = crate::request::target::Target::parse(target)
    {
        out.push(p.at("/target"));
    }
    for (i, glob) in task.scope.iter().enumerate() {
        let plain = glob.trim_end_matches('/');
        let unsafe_part = plain
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || crate::request::paths::is_dotgit(c));
        if unsafe_part {
            out.push(
                Problem::new(
                    Code::TaskInvalidValue,
                    format!(
                        "scope entry '{}' leaves the tree or names .git",
                        quoted(glob)
                    ),
                    "scope entries are paths or globs relative to the top of the tree, like src/** or docs",
                )
                .at(format!("/scope/{i}")),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validator_generated_at_build_time_agrees_with_jsonschema() {
        let mut samples = crate::request::validate::tests::samples_in("samples/tasks");
        samples.extend(crate::request::validate::tests::samples_in(
            "samples/tasks/invalid",
        ));
        assert!(samples.len() >= 3, "{}", samples.len());
        crate::request::schema::assert_generated_agrees(&SCHEMA, SCHEMA_TEXT, &samples);
    }

    fn codes(text: &str) -> Vec<(Code, Option<String>)> {
        parse(text.as_bytes())
            .expect_err("refused")
            .into_iter()
            .map(|p| (p.code, p.field))
            .collect()
    }

    const GOOD: &str = r#"{"schema":"hyperion.task-request/v1","task_id":"T-1","title":"t","instructions":"do it","kind":"docs"}"#;

    #[test]
    fn a_minimal_task_is_read_with_its_defaults() {
        let t = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(t.priority, crate::request::model::DEFAULT_PRIORITY);
        assert!(t.scope.is_empty() && t.budget.is_empty() && t.sla.is_none());
    }

    #[test]
    fn every_problem_is_named_with_its_field() {
        let bad = r#"{"schema":"hyperion.task-request/v2","task_id":"a b","title":"t","kind":"poem","budgett":{},"priority":12}"#;
        let got = codes(bad);
        for want in [
            (Code::TaskSchemaVersion, Some("/schema".to_owned())),
            (Code::TaskMissingField, Some("/instructions".to_owned())),
            (Code::TaskUnknownField, Some("/budgett".to_owned())),
            (Code::TaskInvalidValue, Some("/kind".to_owned())),
            (Code::TaskInvalidValue, Some("/priority".to_owned())),
            (Code::TaskInvalidValue, Some("/task_id".to_owned())),
        ] {
            assert!(got.contains(&want), "{want:?} not in {got:?}");
        }
    }

    #[test]
    fn durations_targets_and_scope_are_checked_beyond_the_schema() {
        let bad = r#"{"schema":"hyperion.task-request/v1","task_id":"T","title":"t","instructions":"x","kind":"docs",
            "sla":{"within":"soon"},"budget":{"wall_time":"forever"},"target":"refs/tags/v1",
            "scope":["src/../../etc","ok/**",".git/config"]}"#;
        let got = codes(bad);
        assert_eq!(
            got,
            vec![
                (Code::TaskInvalidValue, Some("/sla/within".to_owned())),
                (Code::TaskInvalidValue, Some("/budget/wall_time".to_owned())),
                (Code::TargetNotBranch, Some("/target".to_owned())),
                (Code::TaskInvalidValue, Some("/scope/0".to_owned())),
                (Code::TaskInvalidValue, Some("/scope/2".to_owned())),
            ]
        );
    }

    #[test]
    fn an_sla_is_a_deadline_or_a_duration_not_both() {
        let both = GOOD.replace(
            r#""kind":"docs""#,
            r#""kind":"docs","sla":{"deadline":"2026-12-24T18:00:00Z","within":"2h"}"#,
        );
        assert_eq!(codes(&both)[0].0, Code::TaskInvalidValue);
        let bad_time = GOOD.replace(
            r#""kind":"docs""#,
            r#""kind":"docs","sla":{"deadline":"tomorrow"}"#,
        );
        assert_eq!(codes(&bad_time)[0].0, Code::TaskInvalidValue);
    }

    #[test]
    fn broken_json_is_a_syntax_error_with_its_line() {
        let p = parse(b"{\n\"schema\": ").unwrap_err();
        assert_eq!(p[0].code, Code::TaskJsonSyntax);
        assert_eq!(p[0].line, Some(2));
    }
}
