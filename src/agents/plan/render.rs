//! An assignment's instructions, rendered with minijinja from the template of the task's kind.
//!
//! Built-in templates (`templates/<kind>.md.j2`, compiled in) can be replaced by
//! `.hyperion/templates/<kind>.md.j2` in the **target branch's tree**, read by the caller from
//! the tree and never from a work tree. Whoever can push to the target can write one, and an
//! agent's request could add one, so a template is hostile input:
//!
//! - the environment is empty: no loader (no `include`, `extends`, `import`: those features
//!   are not even compiled in), no macros, no built-in filters or globals (no `range`); the
//!   only filters are `length` and a `join` whose result is bounded;
//! - operators and statements that build strings in memory without writing them out (`~`,
//!   `+`, `*`, a block `{% set %}`, `{% filter %}`) are refused before the template is
//!   compiled, so memory cannot double per statement;
//! - fuel bounds the instructions one render executes (loops over loops), recursion is
//!   limited, and the output goes to a writer that stops at [`MAX_OUTPUT`] bytes;
//! - a template is at most [`MAX_TEMPLATE`] bytes.
//!
//! The context is data only: `task` (`id`, `title`, `instructions`, `kind`, `priority`,
//! `deadline`, `checks`) and `assignment` (`files`, `owners`, `domain`).

use minijinja::value::Value;
use minijinja::{Environment, ErrorKind};

use crate::agents::model::TaskKind;
use crate::code::Code;
use crate::error::Problem;

/// Where a target branch overrides the template of a kind: `<dir>/<kind>.md.j2`.
pub const OVERRIDE_DIR: &str = ".hyperion/templates";
/// The largest template read.
pub const MAX_TEMPLATE: usize = 64 << 10;
/// The largest rendered instructions.
pub const MAX_OUTPUT: usize = 1 << 20;
/// The instructions one render may execute.
pub const FUEL: u64 = 1_000_000;
const RECURSION: usize = 16;

/// The built-in template of `kind`.
pub fn builtin(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Feature => include_str!("templates/feature.md.j2"),
        TaskKind::Bugfix => include_str!("templates/bugfix.md.j2"),
        TaskKind::Refactor => include_str!("templates/refactor.md.j2"),
        TaskKind::Docs => include_str!("templates/docs.md.j2"),
        TaskKind::Test => include_str!("templates/test.md.j2"),
        TaskKind::Chore => include_str!("templates/chore.md.j2"),
    }
}

/// The path of `kind`'s override in the target tree.
pub fn override_path(kind: TaskKind) -> String {
    format!("{OVERRIDE_DIR}/{}.md.j2", kind.as_str())
}

/// What one assignment's instructions are made of.
pub struct Context<'a> {
    pub task: &'a crate::agents::model::TaskRequest,
    pub deadline: Option<jiff::Timestamp>,
    pub files: &'a [String],
    pub owners: &'a [String],
    pub domain: &'a str,
}

/// A compiled template, rendered once per candidate assignment.
pub struct Renderer {
    env: Environment<'static>,
    /// Where the template came from (`main:.hyperion/templates/docs.md.j2`, `built-in docs`).
    pub origin: String,
}

impl Renderer {
    /// Compile `source`, named `origin` in errors. `plan.template_invalid` if it is too large,
    /// uses what is refused (see the module docs), or does not parse.
    pub fn new(source: &[u8], origin: &str) -> Result<Renderer, Problem> {
        let invalid = |message: String| {
            Problem::new(
                Code::PlanTemplateInvalid,
                message,
                "fix the template on the target branch, or remove it to use the built-in one (docs/agents.md#templates)",
            )
            .at(origin.to_owned())
        };
        if source.len() > MAX_TEMPLATE {
            return Err(invalid(format!(
                "the template is {} bytes, more than {MAX_TEMPLATE}",
                source.len()
            )));
        }
        let text = std::str::from_utf8(source)
            .map_err(|_| invalid("the template is not UTF-8 text".to_owned()))?;
        if let Some(why) = refused_syntax(text) {
            return Err(invalid(why));
        }
        let mut env = Environment::empty();
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        env.add_filter("length", length);
        env.add_filter("join", join);
        env.add_template_owned("instructions", text.to_owned())
            .map_err(|e| invalid(format!("the template does not parse: {}", describe(&e))))?;
        Ok(Renderer {
            env,
            origin: origin.to_owned(),
        })
    }

    /// The instructions for one assignment. `plan.template_limit` when the template runs out
    /// of fuel or its output passes [`MAX_OUTPUT`]; `plan.template_invalid` for any other
    /// error it raises.
    pub fn render(&self, cx: &Context<'_>) -> Result<String, Problem> {
        let task = cx.task;
        let strings = |v: &[String]| Value::from_iter(v.iter().map(|s| Value::from(s.as_str())));
        let ctx = minijinja::context! {
            task => minijinja::context! {
                id => task.task_id.as_str(),
                title => task.title.as_str(),
                instructions => task.instructions.as_str(),
                kind => task.kind.as_str(),
                priority => task.priority,
                deadline => cx.deadline.map(|d| d.to_string()),
                checks => strings(&task.checks),
            },
            assignment => minijinja::context! {
                files => strings(cx.files),
                owners => strings(cx.owners),
                domain => cx.domain,
            },
        };
        let template = self
            .env
            .get_template("instructions")
            .expect("the template was added in new");
        let mut out = Bounded(Vec::new());
        match template.render_captured_to(ctx, &mut out) {
            Ok(_) => Ok(String::from_utf8(out.0).expect("minijinja writes UTF-8")),
            Err(e) => {
                let limit = matches!(e.kind(), ErrorKind::OutOfFuel)
                    || out.0.len() >= MAX_OUTPUT
                    || matches!(e.kind(), ErrorKind::InvalidOperation)
                        && e.to_string().contains("recursion");
                let (code, hint) = if limit {
                    (
                        Code::PlanTemplateLimit,
                        "the template does too much work or writes too much: loop over the assignment's files once",
                    )
                } else {
                    (
                        Code::PlanTemplateInvalid,
                        "fix the template on the target branch, or remove it to use the built-in one (docs/agents.md#templates)",
                    )
                };
                let what = if out.0.len() >= MAX_OUTPUT {
                    format!("its output passed {MAX_OUTPUT} bytes")
                } else {
                    describe(&e)
                };
                Err(
                    Problem::new(code, format!("the template failed: {what}"), hint)
                        .at(self.origin.clone()),
                )
            }
        }
    }
}

/// A minijinja error on one line, without the template's source.
fn describe(e: &minijinja::Error) -> String {
    let mut s = e.kind().to_string();
    if let Some(detail) = e.detail() {
        s.push_str(": ");
        s.push_str(detail);
    }
    if let Some(line) = e.line() {
        s.push_str(&format!(" (line {line})"));
    }
    s.chars().take(300).collect()
}

/// Collects output up to [`MAX_OUTPUT`] bytes, then fails the render.
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT {
            let room = MAX_OUTPUT - self.0.len();
            self.0.extend_from_slice(&buf[..room]);
            return Err(std::io::Error::other("the instructions are too long"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn length(v: Value) -> Result<Value, minijinja::Error> {
    v.len().map(Value::from).ok_or_else(|| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "length of a value without one")
    })
}

/// `items|join(sep)`: strings and numbers only, the result at most [`MAX_OUTPUT`] bytes
/// (checked before it is built).
fn join(items: Value, sep: Option<&str>) -> Result<String, minijinja::Error> {
    let sep = sep.unwrap_or("");
    let too_long = || minijinja::Error::new(ErrorKind::InvalidOperation, "join result too long");
    let mut parts = Vec::new();
    let mut total = 0usize;
    for item in items.try_iter()? {
        let s = match item.as_str() {
            Some(s) => s.to_owned(),
            None if item.is_number() => item.to_string(),
            None => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "join takes strings and numbers only",
                ));
            }
        };
        total = total
            .checked_add(s.len() + sep.len())
            .filter(|t| *t <= MAX_OUTPUT)
            .ok_or_else(too_long)?;
        parts.push(s);
    }
    Ok(parts.join(sep))
}

/// What a template may not use, found before it is compiled: operators that build strings
/// (`~`, `+`, `*`) inside `{{ }}` and `{% %}`, and statements that capture output into memory
/// (a block `{% set name %}`, `{% filter %}`). Quoted strings and `{# #}` comments are skipped.
fn refused_syntax(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut line = 1;
    while i < b.len() {
        if b[i] == b'\n' {
            line += 1;
        }
        if b[i] != b'{' || i + 1 >= b.len() {
            i += 1;
            continue;
        }
        let (close, statement) = match b[i + 1] {
            b'{' => (b'}', false),
            b'%' => (b'%', true),
            b'#' => {
                // A comment: skip to `#}`.
                let end = text[i + 2..].find("#}").map_or(b.len(), |e| i + 2 + e + 2);
                line += text[i..end].matches('\n').count();
                i = end;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        let start = i + 2;
        let mut j = start;
        let mut quote: Option<u8> = None;
        let mut code = String::new();
        while j < b.len() {
            let c = b[j];
            if c == b'\n' {
                line += 1;
            }
            match quote {
                Some(q) => {
                    if c == b'\\' {
                        j += 1;
                    } else if c == q {
                        quote = None;
                    }
                    code.push(' ');
                }
                None => {
                    if c == b'\'' || c == b'"' {
                        quote = Some(c);
                    } else if c == close && b.get(j + 1) == Some(&b'}') {
                        break;
                    } else if matches!(c, b'~' | b'+' | b'*') {
                        return Some(format!(
                            "line {line}: the operator '{}' is not allowed in instruction templates",
                            c as char
                        ));
                    }
                    code.push(c as char);
                }
            }
            j += 1;
        }
        if statement {
            let words: Vec<&str> = code
                .trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace())
                .split_whitespace()
                .collect();
            match words.first().copied() {
                Some("filter") => {
                    return Some(format!(
                        "line {line}: {{% filter %}} blocks are not allowed in instruction templates"
                    ));
                }
                Some("set") if !code.contains('=') => {
                    return Some(format!(
                        "line {line}: block {{% set %}} is not allowed in instruction templates; use {{% set name = value %}}"
                    ));
                }
                _ => {}
            }
        }
        i = j + 2;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::model::TaskRequest;

    fn task() -> TaskRequest {
        crate::agents::task::parse(
            br#"{"schema":"hyperion.task-request/v1","task_id":"T-1","title":"Docs","instructions":"Say it.","kind":"docs","checks":["unit"]}"#,
        )
        .unwrap()
    }

    fn render(source: &str) -> Result<String, Problem> {
        let t = task();
        let files = vec!["a.md".to_owned(), "b.md".to_owned()];
        let owners = vec!["@docs".to_owned()];
        Renderer::new(source.as_bytes(), "test")?.render(&Context {
            task: &t,
            deadline: None,
            files: &files,
            owners: &owners,
            domain: "docs",
        })
    }

    #[test]
    fn every_builtin_template_renders_the_task_and_the_files() {
        for kind in TaskKind::ALL {
            let out = render(builtin(kind)).unwrap();
            for want in [
                "Docs",
                "T-1",
                "Say it.",
                "- `a.md`",
                "- `b.md`",
                "@docs",
                "unit",
                "2 file(s)",
            ] {
                assert!(out.contains(want), "{kind:?}: {want} missing in\n{out}");
            }
        }
    }

    #[test]
    fn an_endless_loop_runs_out_of_fuel() {
        let nested =
            "{% for a in assignment.files recursive %}{{ loop(assignment.files) }}x{% endfor %}";
        let p = render(nested).unwrap_err();
        assert_eq!(p.code, Code::PlanTemplateLimit, "{p}");
        let deep = format!(
            "{}.{}",
            "{% for a in assignment.files %}".repeat(40),
            "{% endfor %}".repeat(40)
        );
        let p = render(&deep).unwrap_err();
        assert_eq!(p.code, Code::PlanTemplateLimit, "{p}");
    }

    #[test]
    fn huge_output_is_cut_off() {
        // Loops over the characters of the instructions, 7^5 times a 200-byte line.
        let line = "x".repeat(200);
        let deep = format!(
            "{}{line}{}",
            "{% for c in task.instructions %}".repeat(5),
            "{% endfor %}".repeat(5)
        );
        let p = render(&deep).unwrap_err();
        assert_eq!(p.code, Code::PlanTemplateLimit, "{p}");
        assert!(p.message.contains("output"), "{p}");
        // Nesting deeper than the recursion limit stops there.
        let deeper = format!(
            "{}.{}",
            "{% for a in assignment.files %}".repeat(RECURSION + 3),
            "{% endfor %}".repeat(RECURSION + 3)
        );
        assert_eq!(render(&deeper).unwrap_err().code, Code::PlanTemplateLimit);
    }

    #[test]
    fn string_building_and_loaders_are_refused() {
        for src in [
            "{{ task.title ~ task.title }}",
            "{% set s = task.title + task.title %}",
            "{{ 'x' * 100000000 }}",
            "{% set s %}{{ task.instructions }}{% endset %}",
            "{% filter upper %}x{% endfilter %}",
            "{% include 'x' %}",
            "{% macro m() %}{% endmacro %}",
            "{{ range(10) }}",
            "{{ task.title|replace('a', 'b') }}",
            "{% for %}",
        ] {
            let p = render(src).unwrap_err();
            assert_eq!(p.code, Code::PlanTemplateInvalid, "{src}: {p}");
        }
        // Inside quotes and comments the characters are text.
        assert_eq!(render("{{ 'a~b+c*' }}{# ~ + * #}").unwrap(), "a~b+c*");
    }

    #[test]
    fn a_huge_join_is_refused_before_it_is_built() {
        let p = render("{{ assignment.files|join(task.instructions) }}").unwrap();
        assert_eq!(p, "a.mdSay it.b.md");
        assert!(render("{{ [assignment.files]|join }}").is_err());
    }

    #[test]
    fn oversized_and_binary_templates_are_refused() {
        let big = "x".repeat(MAX_TEMPLATE + 1);
        assert_eq!(render(&big).unwrap_err().code, Code::PlanTemplateInvalid);
        let p = Renderer::new(b"\xff\xfe", "t").err().unwrap();
        assert_eq!(p.code, Code::PlanTemplateInvalid);
    }
}
