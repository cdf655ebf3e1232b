//! The JSON Schemas of submitted documents (change requests, see [`crate::request::validate`];
//! task requests, see [`crate::agents::task`]): each one's validator generated from the shipped
//! file at build time (`#[jsonschema::validator]`; the tests hold it to jsonschema's run-time
//! validator of the same file), and its validation errors turned into [`Problem`]s one way for
//! both — unknown field, missing field, schema version, any other invalid value. What differs
//! between the formats is data of their [`Schema`]: the codes and hints, and the special cases
//! of a format's own rules.
//!
//! Every name and value quoted from the document into a message is escaped and cut here
//! ([`quoted`], and jsonschema's own messages the same way): the CLI escapes and clips again
//! on the terminal, but the `--format json` document keeps whatever a problem holds, so a
//! field named with a terminal escape or a 100,000-character value must not reach it whole.
//! A problem's `field` (a JSON pointer) keeps the name whole: it is what a program matches on.
//!
//! Nothing here knows a format's fields beyond what its [`Schema`] says.

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use crate::code::Code;
use crate::error::Problem;

/// The code and hint of one kind of schema problem.
pub struct Rule {
    pub code: Code,
    pub hint: &'static str,
}

/// A format's codes and hints for the four kinds of schema problems.
pub struct Rules {
    /// A field the format does not have (`additionalProperties: false`).
    pub unknown_field: Rule,
    /// A required field that is absent.
    pub missing_field: Rule,
    /// `schema` is not the one version this program reads.
    pub schema_version: Rule,
    /// Any other value the schema refuses; the message is jsonschema's.
    pub invalid_value: Rule,
}

/// A format's own rules that a generic message would explain badly: the problem for a
/// validation error at a (JSON pointer) path, or `None` for the generic one.
pub type Special = fn(&ValidationErrorKind, &str) -> Option<Problem>;

/// A schema's validation, compiled into the binary (`#[jsonschema::validator]`): every error
/// it finds in a document.
pub type Errors = for<'a> fn(&'a Value) -> jsonschema::ErrorIterator<'a>;

/// One shipped JSON Schema (2020-12), its validator, and how its errors read.
pub struct Schema {
    errors: Errors,
    version: &'static str,
    rules: Rules,
    special: Special,
}

impl Schema {
    /// `errors` is the validator of the schema as shipped in `schemas/`, generated at build
    /// time; `version` what its `schema` field must hold; `special` the format's own cases,
    /// tried before the generic ones.
    pub const fn new(
        errors: Errors,
        version: &'static str,
        rules: Rules,
        special: Special,
    ) -> Schema {
        Schema {
            errors,
            version,
            rules,
            special,
        }
    }

    /// No special cases.
    pub fn no_special(_: &ValidationErrorKind, _: &str) -> Option<Problem> {
        None
    }

    /// Every problem the schema finds in `value`, in the generated validator's order.
    pub fn problems(&self, value: &Value) -> Vec<Problem> {
        use ValidationErrorKind as K;
        let rules = &self.rules;
        let mut out = Vec::new();
        for e in (self.errors)(value) {
            let path = e.instance_path().to_string();
            if let Some(p) = (self.special)(e.kind(), &path) {
                out.push(p);
                continue;
            }
            let at = if path.is_empty() {
                "/".to_owned()
            } else {
                path.clone()
            };
            let p = match e.kind() {
                K::AdditionalProperties { unexpected } => {
                    for name in unexpected {
                        out.push(
                            Problem::new(
                                rules.unknown_field.code,
                                format!("unknown field '{}'", quoted(name)),
                                rules.unknown_field.hint,
                            )
                            .at(format!("{path}/{}", pointer_token(name))),
                        );
                    }
                    continue;
                }
                K::Required { property } => {
                    // Named by the schema, not by the document.
                    let name = property.as_str().unwrap_or("?");
                    Problem::new(
                        rules.missing_field.code,
                        format!("missing required field '{name}'"),
                        rules.missing_field.hint,
                    )
                    .at(format!("{path}/{}", pointer_token(name)))
                }
                K::Constant { .. } if path == "/schema" => Problem::new(
                    rules.schema_version.code,
                    format!(
                        "unsupported schema {}; this version reads {}",
                        cleaned(&value["schema"].to_string()),
                        self.version
                    ),
                    rules.schema_version.hint,
                )
                .at(at),
                // The schemas refuse characters as `"not": {"pattern": CLASS}`: a positive
                // class compiles in a tenth of the time of the negated one it replaces.
                K::Not { schema } if schema.get("pattern").is_some() => Problem::new(
                    rules.invalid_value.code,
                    format!(
                        "{} holds a character not allowed here (one matching {})",
                        cleaned(&e.instance().to_string()),
                        cleaned(schema["pattern"].as_str().unwrap_or("?"))
                    ),
                    rules.invalid_value.hint,
                )
                .at(at),
                _ => Problem::new(
                    rules.invalid_value.code,
                    cleaned(&e.to_string()),
                    rules.invalid_value.hint,
                )
                .at(at),
            };
            out.push(p);
        }
        out
    }
}

/// The most a quoted name or value keeps, in bytes (escaped), before `…`.
pub const QUOTE_MAX: usize = 300;

/// `s` for a message that quotes it between `'…'`: escaped as Rust's `escape_debug` does
/// (control characters as `\u{1b}`, `\n`; quotes and backslashes), and cut after
/// [`QUOTE_MAX`] bytes, `…` marking the cut. For names and values taken from a document.
pub fn quoted(s: &str) -> String {
    cut(s, |_| true)
}

/// `s`, a message that already quotes values (jsonschema renders them as JSON, whose quotes
/// stay), with its control characters escaped and cut as [`quoted`] cuts. JSON escapes
/// control characters below 0x20 but not DEL or the C1 controls (`\u{9b}` starts a terminal
/// sequence too).
pub fn cleaned(s: &str) -> String {
    cut(s, char::is_control)
}

fn cut(s: &str, escape: fn(char) -> bool) -> String {
    let mut out = String::with_capacity(s.len().min(QUOTE_MAX + 4));
    for c in s.chars() {
        let before = out.len();
        if escape(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
        if out.len() > QUOTE_MAX {
            out.truncate(before);
            out.push('…');
            break;
        }
    }
    out
}

/// `name` as one token of a JSON pointer (RFC 6901: `~` as `~0`, `/` as `~1`), as
/// jsonschema writes the rest of the path.
fn pointer_token(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains(['~', '/']) {
        name.replace('~', "~0").replace('/', "~1").into()
    } else {
        name.into()
    }
}

/// Test support: the validator generated at build time finds exactly the errors (message and
/// place, in any order) that jsonschema's run-time validator of the shipped `text` finds, in
/// each of `samples` and in every document one change away from them (each value removed,
/// replaced by a value of each JSON type and of odd sizes, each object given a field it does
/// not have).
#[cfg(test)]
pub(crate) fn assert_generated_agrees(schema: &Schema, text: &str, samples: &[Value]) {
    fn places(v: &Value, at: Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(at.clone());
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| {
                let mut at = at.clone();
                at.push(k.clone());
                places(v, at, out)
            }),
            Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| {
                let mut at = at.clone();
                at.push(i.to_string());
                places(v, at, out)
            }),
            _ => {}
        }
    }
    fn at<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
        path.iter().fold(v, |v, k| match v {
            Value::Array(a) => &mut a[k.parse::<usize>().expect("index")],
            v => &mut v[k.as_str()],
        })
    }
    let odd = [
        Value::Null,
        Value::Bool(true),
        serde_json::json!(-1),
        serde_json::json!(0),
        serde_json::json!(1.5),
        serde_json::json!(1u64 << 60),
        serde_json::json!(""),
        serde_json::json!("x".repeat(300)),
        serde_json::json!("a/../b"),
        serde_json::json!([]),
        serde_json::json!(["x"]),
        serde_json::json!({}),
    ];
    let mut documents = Vec::new();
    for sample in samples {
        documents.push(sample.clone());
        let mut paths = Vec::new();
        places(sample, Vec::new(), &mut paths);
        for path in paths {
            for value in &odd {
                let mut d = sample.clone();
                *at(&mut d, &path) = value.clone();
                documents.push(d);
            }
            let mut d = sample.clone();
            if let Value::Object(m) = at(&mut d, &path) {
                m.insert("zz_unknown".into(), Value::Null);
                documents.push(d.clone());
            }
            if let Some((last, parent)) = path.split_last() {
                let mut d = sample.clone();
                match at(&mut d, parent) {
                    Value::Object(m) => drop(m.remove(last)),
                    Value::Array(a) => drop(a.remove(last.parse::<usize>().expect("index"))),
                    _ => {}
                }
                documents.push(d);
            }
        }
    }
    let runtime = jsonschema::draft202012::new(&serde_json::from_str(text).expect("JSON"))
        .expect("the shipped schema is valid");
    // The same errors; their order may differ (the generated code checks a schema object's
    // keywords in an order of its own).
    let seen = |errors: jsonschema::ErrorIterator<'_>| -> Vec<(String, String)> {
        let mut seen: Vec<_> = errors
            .map(|e| (e.instance_path().to_string(), e.to_string()))
            .collect();
        seen.sort();
        seen
    };
    let mut refused = 0;
    for d in &documents {
        let generated = seen((schema.errors)(d));
        assert_eq!(generated, seen(runtime.iter_errors(d)), "{d}");
        refused += usize::from(!generated.is_empty());
    }
    // The mutations reach the schema's rules: most of them are refused.
    assert!(
        refused * 2 > documents.len(),
        "{refused} of {} refused",
        documents.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_text_is_escaped_and_cut() {
        assert_eq!(quoted("plain 'x' ü"), r"plain \'x\' ü");
        assert_eq!(quoted("a\u{1b}[2J\n\u{9b}"), r"a\u{1b}[2J\n\u{9b}");
        assert_eq!(cleaned("\"a\u{7f}\" is \"b\""), r#""a\u{7f}" is "b""#);
        let long = format!("{}\u{7}", "ü".repeat(10_000));
        for s in [quoted(&long), cleaned(&long)] {
            assert!(s.len() <= QUOTE_MAX + '…'.len_utf8(), "{}", s.len());
            assert!(s.ends_with('…') && !s.chars().any(char::is_control));
        }
        // Exactly at the limit: nothing cut.
        assert_eq!(quoted(&"x".repeat(QUOTE_MAX)), "x".repeat(QUOTE_MAX));
        // An escape is not split: it stays whole or goes.
        let s = quoted(&format!("{}\u{1b}", "x".repeat(QUOTE_MAX - 3)));
        assert_eq!(s, format!("{}…", "x".repeat(QUOTE_MAX - 3)));
    }

    #[jsonschema::validator(
        schema = r#"{"type": "object", "additionalProperties": false, "required": ["schema", "n"],
            "properties": {"schema": {"const": "toy/v1"}, "n": {"type": "integer"},
                           "s": {"maxLength": 4}}}"#,
        draft = Draft202012,
        methods = { is_valid = false, validate = false }
    )]
    struct Toy;

    static TOY: Schema = Schema::new(
        Toy::iter_errors,
        "toy/v1",
        Rules {
            unknown_field: Rule {
                code: Code::TaskUnknownField,
                hint: "u",
            },
            missing_field: Rule {
                code: Code::TaskMissingField,
                hint: "m",
            },
            schema_version: Rule {
                code: Code::TaskSchemaVersion,
                hint: "v",
            },
            invalid_value: Rule {
                code: Code::TaskInvalidValue,
                hint: "i",
            },
        },
        Schema::no_special,
    );

    #[test]
    fn every_kind_of_problem_takes_the_schemas_code_and_hint() {
        let long = "\u{9b}".repeat(1000);
        let v = serde_json::json!({"schema": long, "a/b\u{1b}": 1, "s": long});
        let got: Vec<_> = TOY
            .problems(&v)
            .into_iter()
            .map(|p| (p.code, p.field.unwrap_or_default(), p.hint, p.message))
            .collect();
        let fields: Vec<_> = got.iter().map(|g| (g.0, g.1.as_str(), &*g.2)).collect();
        for want in [
            (Code::TaskUnknownField, "/a~1b\u{1b}", "u"),
            (Code::TaskMissingField, "/n", "m"),
            (Code::TaskSchemaVersion, "/schema", "v"),
            (Code::TaskInvalidValue, "/s", "i"),
        ] {
            assert!(fields.contains(&want), "{want:?} not in {fields:?}");
        }
        for (.., message) in &got {
            assert!(message.len() <= QUOTE_MAX + 50, "{message}");
            assert!(!message.chars().any(char::is_control), "{message:?}");
        }
    }

    #[test]
    fn a_field_name_is_one_pointer_token() {
        assert_eq!(pointer_token("a/b~c"), "a~1b~0c");
        assert_eq!(pointer_token("plain"), "plain");
    }

    /// The schemas refuse characters with `"not": {"pattern": CLASS}`, which compiles in a
    /// tenth of the time of the anchored negated class they had: both forms accept exactly
    /// the same strings, every character up to U+00FF and some beyond, alone and among others.
    #[test]
    fn refusing_a_class_of_characters_accepts_what_the_negated_class_accepted() {
        let pairs = [
            (r"^[^\u0000-\u001f]+$", r"[\u0000-\u001f]"),
            (r"^[^\u0000-\u001f<>]+$", r"[\u0000-\u001f<>]"),
            (r"^[^\u0000-\u001f\u007f]+$", r"[\u0000-\u001f\u007f]"),
            (r"^[^/\u0000-\u001f\u007f]", r"^[/\u0000-\u001f\u007f]"),
        ];
        let mut chars: Vec<char> = (0u32..=0xff).filter_map(char::from_u32).collect();
        chars.extend(['\u{2028}', '\u{feff}', 'é', '中', '😀', '\u{10ffff}']);
        let mut strings = vec![String::new(), "a/b".into(), "/".into()];
        for c in chars {
            strings.extend([
                c.to_string(),
                format!("{c}ab"),
                format!("a{c}b"),
                format!("ab{c}"),
            ]);
        }
        for (old, new) in pairs {
            let compile = |s: Value| jsonschema::draft202012::new(&s).expect("schema");
            let old_form = compile(serde_json::json!(
                {"type": "string", "minLength": 1, "pattern": old}
            ));
            let new_form = compile(serde_json::json!(
                {"type": "string", "minLength": 1, "not": {"type": "string", "pattern": new}}
            ));
            for s in &strings {
                let v = Value::String(s.clone());
                assert_eq!(
                    old_form.is_valid(&v),
                    new_form.is_valid(&v),
                    "{old} against {new} on {s:?}"
                );
            }
            // And a value of another type is refused by `type` alone, not also by `not`.
            let n = serde_json::json!(5);
            assert_eq!(new_form.iter_errors(&n).count(), 1);
        }
        // Every `not` of a pattern in the shipped schemas is one of the forms compared here.
        fn nots(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(p) = m.get("not").and_then(|n| n.get("pattern")) {
                        out.push(p.as_str().expect("a pattern is a string").to_owned());
                    }
                    m.values().for_each(|v| nots(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| nots(v, out)),
                _ => {}
            }
        }
        let mut shipped = Vec::new();
        for text in [
            crate::request::validate::SCHEMA_TEXT,
            crate::agents::task::SCHEMA_TEXT,
        ] {
            nots(&serde_json::from_str(text).expect("JSON"), &mut shipped);
        }
        assert!(shipped.len() >= 8, "{shipped:?}");
        for p in &shipped {
            assert!(pairs.iter().any(|(_, new)| new == p), "{p} is not compared");
        }
    }
}
