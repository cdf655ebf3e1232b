//! Secrets: the one scanner every path that looks for secrets or redacts them goes through.
//!
//! A [`Scanner`] is a set of [`Rule`]s: the built-in ones ([`BUILTIN`]) less those a policy
//! disables, plus the policy's own patterns. Validation refuses a request in which a scanner
//! finds anything ([`Scanner::find`], [`Scanner::find_all`]); output a worker captures is
//! redacted instead ([`Scanner::redact`]) before it is stored.
//!
//! Redaction uses one process-wide scanner ([`redactor`]): every built-in rule (disabled or
//! not: redacting more output than a policy asks for is harmless), every rule of every policy
//! this process has parsed ([`register`]), and the values of the process's own
//! secret-looking environment variables (`*TOKEN*`, `*SECRET*`, `*PASSWORD*`, `*KEY*`, …;
//! see [`env_rules`]), so that a check printing `$GITHUB_TOKEN` does not store it even when the
//! token matches no rule. [`redact_transition`] applies it to everything a queue transition
//! stores (error messages, event reasons and actors, artifacts); the log writer of the binary
//! applies it to every log line.
//!
//! What a scan sees: the bytes as given, and the same bytes with invisible format characters
//! (zero-width spaces and joiners, soft hyphens, bidi controls, BOMs, variation selectors,
//! tag characters) removed, so `ghp_\u{200b}…` is found too. A secret that is encoded,
//! reversed, split into pieces or otherwise transformed is not found: no scanner can, and a
//! process that runs code can always print a value that way. Redaction guards against
//! secrets printed as they are; keeping secrets out of a check's reach is the real defence.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::{Arc, OnceLock, RwLock};

use regex::bytes::{Regex, RegexBuilder};

/// The built-in secret rules: (name, what it finds, expression). Matched on bytes, ASCII-only
/// (`\b`, `\s` and classes do not look at Unicode), so a scan never slows down on non-ASCII text.
pub const BUILTIN: &[(&str, &str, &str)] = &[
    (
        "private-key",
        "a private key",
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----",
    ),
    (
        "aws-access-key-id",
        "an AWS access key id",
        r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b",
    ),
    (
        "aws-secret-access-key",
        "an AWS secret access key",
        r#"(?i)aws_?secret_?(?:access_?)?key\b["']?\s*[:=]\s*["']?[A-Za-z0-9/+=]{40}"#,
    ),
    (
        "github-token",
        "a GitHub token",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
    ),
    (
        "gitlab-token",
        "a GitLab token",
        r"\b(?:glpat|gldt|glrt|glptt|glsoat)-[A-Za-z0-9_-]{20,}",
    ),
    (
        "slack-token",
        "a Slack token or webhook",
        r"\bxox[abposre]-[A-Za-z0-9-]{10,}|https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9_/]{20,}",
    ),
    (
        "generic-password",
        "a password or secret assigned a literal",
        r#"(?i)\b(?:password|passwd|pwd|secret|api_?key|access_?token|auth_?token|client_?secret)\b["']?\s*[:=]\s*["'][^"'\s$<{%][^"'\s]{7,}["']"#,
    ),
];

/// Index of `private-key` in [`BUILTIN`]: redaction takes its whole block, not only the
/// `BEGIN` line.
const PRIVATE_KEY: usize = 0;
/// Cheap expressions a built-in rule cannot match without: (rule, gate). The keywords of
/// `generic-password` occur on many lines of ordinary code, and trying the rule at each costs
/// far more than one pass of its selective tail over the text.
const GATES: &[(&str, &str)] = &[(
    "generic-password",
    r#"[:=]\s*["'][^"'\s$<{%][^"'\s]{7,}["']"#,
)];
/// The line that ends a private key block.
const PRIVATE_KEY_END: &str = r"-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----";
/// What [`PRIVATE_KEY_END`] cannot match without.
const PRIVATE_KEY_END_LITERAL: &str = "-----END";

/// Per built-in rule (in [`BUILTIN`]'s order), literals it cannot match without, and whether
/// they are looked for in the text lowered to ASCII lower case (the rules that ignore case).
/// A rule none of whose literals is in a text is neither compiled nor run on it: compiling
/// the seven rules was an eighth of a small `enqueue`, and most texts hold none of these.
/// `tests::the_literals_never_change_what_is_found` holds each list to its rule.
const LITERALS: &[(bool, &[&str])] = &[
    (false, &["-----BEGIN"]),
    (
        false,
        &[
            "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA",
        ],
    ),
    (true, &["aws"]),
    (
        false,
        &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
    ),
    (false, &["glpat-", "gldt-", "glrt-", "glptt-", "glsoat-"]),
    (false, &["xox", "https://hooks.slack.com/"]),
    (true, &["passw", "pwd", "secret", "api", "access", "auth"]),
];

/// Most a rule's compiled program may take (a policy's pattern can be made huge).
const SIZE_LIMIT: usize = 1 << 20;
/// Environment values shorter than this are not redacted: `1`, `true`, `main` would redact
/// ordinary words everywhere.
const MIN_ENV_VALUE: usize = 8;
/// Parts of environment variable names whose values are treated as secrets.
const SECRET_NAME_PARTS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
];
/// Most policy rules the process-wide redactor keeps (one per distinct pattern parsed).
const MAX_REGISTERED: usize = 4096;

/// One secret rule: a name (shown in errors and redaction markers), what it finds, and the
/// expression.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub what: String,
    regex: Regex,
}

impl Rule {
    /// A rule from a regular expression (Rust `regex` syntax, matched on bytes). `^` and `$`
    /// match at line starts and ends too: text is scanned many lines at once, and an anchored
    /// pattern means a line.
    pub fn new(
        name: impl Into<String>,
        what: impl Into<String>,
        pattern: &str,
    ) -> Result<Rule, regex::Error> {
        let regex = RegexBuilder::new(pattern)
            .size_limit(SIZE_LIMIT)
            .multi_line(true)
            .crlf(true)
            .build()?;
        Ok(Rule {
            name: name.into(),
            what: what.into(),
            regex,
        })
    }

    /// The expression.
    pub fn pattern(&self) -> &str {
        self.regex.as_str()
    }
}

/// A built-in rule, compiled the first time a text holds one of its [`LITERALS`].
struct Builtin {
    name: &'static str,
    what: &'static str,
    pattern: &'static str,
    /// (lower case, literals): see [`LITERALS`].
    literals: (bool, &'static [&'static str]),
    regex: OnceLock<Regex>,
    /// What the rule cannot match without, when cheaper to run than the rule ([`GATES`]).
    gate: Option<(&'static str, OnceLock<Regex>)>,
}

impl Builtin {
    fn regex(&self) -> &Regex {
        self.regex.get_or_init(|| build(self.pattern))
    }

    /// Whether the rule may match `text` (`lower`: the text in ASCII lower case, made once
    /// by whoever needs it first).
    fn may_match(&self, text: &[u8], lower: &std::cell::OnceCell<Vec<u8>>) -> bool {
        let (fold, literals) = self.literals;
        let hay = match fold {
            true => lower.get_or_init(|| text.to_ascii_lowercase()).as_slice(),
            false => text,
        };
        literals
            .iter()
            .any(|l| memchr::memmem::find(hay, l.as_bytes()).is_some())
            && self
                .gate
                .as_ref()
                .is_none_or(|(p, g)| g.get_or_init(|| build(p)).is_match(text))
    }
}

struct Builtins {
    rules: Vec<Builtin>,
    key_end: OnceLock<Regex>,
}

impl Builtins {
    /// The end of the private key block that starts at or after `at` in `hay`.
    fn key_end(&self, hay: &[u8], at: usize) -> Option<Range<usize>> {
        memchr::memmem::find(&hay[at..], PRIVATE_KEY_END_LITERAL.as_bytes())?;
        self.key_end
            .get_or_init(|| build(PRIVATE_KEY_END))
            .find_at(hay, at)
            .map(|m| m.range())
    }
}

/// A built-in expression, compiled.
fn build(p: &str) -> Regex {
    RegexBuilder::new(p)
        .unicode(false)
        .build()
        .expect("the built-in secret patterns are valid")
}

fn builtins() -> &'static Builtins {
    static B: OnceLock<Builtins> = OnceLock::new();
    B.get_or_init(|| Builtins {
        rules: BUILTIN
            .iter()
            .zip(LITERALS)
            .map(|((name, what, pattern), literals)| Builtin {
                name,
                what,
                pattern,
                literals: *literals,
                regex: OnceLock::new(),
                gate: GATES
                    .iter()
                    .find(|(rule, _)| rule == name)
                    .map(|(_, gate)| (*gate, OnceLock::new())),
            })
            .collect(),
        key_end: OnceLock::new(),
    })
}

/// A match: the rule and where (a byte range of the text scanned). Never the matched text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit<'s> {
    pub rule: &'s str,
    pub what: &'s str,
    pub range: Range<usize>,
}

/// A set of rules: the built-in ones not disabled, then extra ones.
#[derive(Debug, Clone, Default)]
pub struct Scanner {
    /// Built-in rules turned off, by index in [`BUILTIN`].
    disabled: Vec<usize>,
    extra: Vec<Rule>,
}

impl Scanner {
    /// Every built-in rule and nothing else.
    pub fn builtin() -> Scanner {
        Scanner::default()
    }

    /// The built-in rules except those named in `disabled`, plus `extra`. Unknown names in
    /// `disabled` are ignored (the policy parser reports them).
    pub fn new(disabled: &BTreeSet<String>, extra: Vec<Rule>) -> Scanner {
        Scanner {
            disabled: BUILTIN
                .iter()
                .enumerate()
                .filter(|(_, (n, _, _))| disabled.contains(*n))
                .map(|(i, _)| i)
                .collect(),
            extra,
        }
    }

    /// Names of the rules in use, built-in ones first.
    pub fn names(&self) -> Vec<&str> {
        BUILTIN
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.disabled.contains(i))
            .map(|(_, (n, _, _))| *n)
            .chain(self.extra.iter().map(|r| r.name.as_str()))
            .collect()
    }

    /// The first rule that finds something in `hay`, with where.
    pub fn find(&self, hay: &[u8]) -> Option<Hit<'_>> {
        let mut first = None;
        self.scan(hay, &mut |hit| {
            first = Some(hit);
            false
        });
        first
    }

    /// Every match of every rule in `hay`, by position.
    pub fn find_all(&self, hay: &[u8]) -> Vec<Hit<'_>> {
        let mut out = Vec::new();
        self.scan(hay, &mut |hit| {
            out.push(hit);
            true
        });
        out.sort_by_key(|h| (h.range.start, h.range.end));
        out
    }

    /// Call `f` with each match until it returns `false`. Looks at `hay` with invisible
    /// characters removed when it has any; ranges are in `hay`.
    fn scan<'s>(&'s self, hay: &[u8], f: &mut dyn FnMut(Hit<'s>) -> bool) {
        let view = View::new(hay);
        let text = view.text();
        let b = builtins();
        let mut hit = |rule: &'s str, what: &'s str, m: regex::bytes::Match<'_>| {
            f(Hit {
                rule,
                what,
                range: view.original(m.range()),
            })
        };
        // One pass per rule: each has a literal prefilter of its own, where a set of all
        // of them scans every byte with one large automaton, many times slower.
        let lower = std::cell::OnceCell::new();
        for (i, rule) in b.rules.iter().enumerate() {
            if self.disabled.contains(&i) || !rule.may_match(text, &lower) {
                continue;
            }
            for m in rule.regex().find_iter(text) {
                if !m.is_empty() && !hit(rule.name, rule.what, m) {
                    return;
                }
            }
        }
        for rule in &self.extra {
            // A pattern that matches the empty string finds nothing by that.
            for m in rule.regex.find_iter(text) {
                if !m.is_empty() && !hit(&rule.name, &rule.what, m) {
                    return;
                }
            }
        }
    }

    /// `hay` with every match replaced by `[redacted RULE]`. A private key is redacted from
    /// its `BEGIN` line to its `END` line (or to the end, when that is missing); an `END` line
    /// with no `BEGIN` before it (a tail that starts inside a key) from the start.
    pub fn redact<'h>(&self, hay: &'h [u8]) -> Cow<'h, [u8]> {
        let b = builtins();
        let key_rule = b.rules[PRIVATE_KEY].name;
        let mut spans: Vec<(Range<usize>, &str)> = Vec::new();
        let mut first_key_start = None;
        for h in self.find_all(hay) {
            let mut range = h.range.clone();
            if h.rule == key_rule && !self.disabled.contains(&PRIVATE_KEY) {
                first_key_start.get_or_insert(range.start);
                range.end = b.key_end(hay, range.end).map_or(hay.len(), |m| m.end);
            }
            spans.push((range, h.rule));
        }
        if !self.disabled.contains(&PRIVATE_KEY)
            && let Some(end) = b.key_end(hay, 0)
            && first_key_start.is_none_or(|s| s > end.start)
        {
            spans.push((0..end.end, key_rule));
        }
        if spans.is_empty() {
            return Cow::Borrowed(hay);
        }
        spans.sort_by_key(|(r, _)| (r.start, std::cmp::Reverse(r.end)));
        let mut out = Vec::with_capacity(hay.len());
        let mut at = 0;
        for (range, rule) in spans {
            if range.start < at {
                // Overlaps the span just redacted: one marker for both.
                at = at.max(range.end);
                continue;
            }
            out.extend_from_slice(&hay[at..range.start]);
            out.extend_from_slice(marker(rule).as_bytes());
            at = range.end;
        }
        out.extend_from_slice(&hay[at..]);
        Cow::Owned(out)
    }

    /// [`Scanner::redact`] for text.
    pub fn redact_str<'h>(&self, text: &'h str) -> Cow<'h, str> {
        match self.redact(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(v) => Cow::Owned(match String::from_utf8(v) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            }),
        }
    }
}

/// `[redacted RULE]`, the rule's name kept to characters that are safe in JSON and logs.
fn marker(rule: &str) -> String {
    let name: String = rule
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("[redacted {name}]")
}

/// Text as a scan sees it: as given, or with invisible characters removed.
struct View<'a> {
    original: &'a [u8],
    /// The text without invisible characters, and for each of its bytes the offset of that
    /// byte in the original.
    stripped: Option<(Vec<u8>, Vec<usize>)>,
}

impl<'a> View<'a> {
    fn new(original: &'a [u8]) -> View<'a> {
        let stripped = if original.is_ascii() {
            None
        } else {
            let mut text = Vec::with_capacity(original.len());
            let mut map = Vec::with_capacity(original.len());
            let mut i = 0;
            let mut removed = false;
            while i < original.len() {
                let n = invisible_len(&original[i..]);
                if n > 0 {
                    removed = true;
                    i += n;
                } else {
                    text.push(original[i]);
                    map.push(i);
                    i += 1;
                }
            }
            removed.then_some((text, map))
        };
        View { original, stripped }
    }

    fn text(&self) -> &[u8] {
        self.stripped.as_ref().map_or(self.original, |(t, _)| t)
    }

    fn original(&self, r: Range<usize>) -> Range<usize> {
        match &self.stripped {
            None => r,
            Some((_, map)) if r.is_empty() => {
                let at = map.get(r.start).copied().unwrap_or(self.original.len());
                at..at
            }
            Some((_, map)) => map[r.start]..map[r.end - 1] + 1,
        }
    }
}

/// Length in bytes of the invisible format character `b` starts with (UTF-8), or 0.
fn invisible_len(b: &[u8]) -> usize {
    match b {
        // U+00AD soft hyphen
        [0xC2, 0xAD, ..] => 2,
        // U+034F combining grapheme joiner
        [0xCD, 0x8F, ..] => 2,
        // U+061C Arabic letter mark
        [0xD8, 0x9C, ..] => 2,
        // U+180E Mongolian vowel separator
        [0xE1, 0xA0, 0x8E, ..] => 3,
        // U+200B–U+200F zero-width space, joiners, LRM, RLM
        [0xE2, 0x80, 0x8B..=0x8F, ..] => 3,
        // U+202A–U+202E bidi embeddings and overrides
        [0xE2, 0x80, 0xAA..=0xAE, ..] => 3,
        // U+2060–U+2064 word joiner, invisible operators; U+2066–U+206F isolates and others
        [0xE2, 0x81, 0xA0..=0xA4 | 0xA6..=0xAF, ..] => 3,
        // U+FE00–U+FE0F variation selectors
        [0xEF, 0xB8, 0x80..=0x8F, ..] => 3,
        // U+FEFF zero-width no-break space (BOM)
        [0xEF, 0xBB, 0xBF, ..] => 3,
        // U+E0001, U+E0020–U+E007F tag characters
        [0xF3, 0xA0, 0x80, 0x81 | 0xA0..=0xBF, ..] | [0xF3, 0xA0, 0x81, 0x80..=0xBF, ..] => 4,
        _ => 0,
    }
}

/// One rule per secret-looking variable of `vars` (a name containing [`SECRET_NAME_PARTS`],
/// any case) whose value, or a line of it, has at least [`MIN_ENV_VALUE`] bytes. The rule
/// `env:NAME` matches the value's lines literally.
pub fn env_rules(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<Rule> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for (name, value) in vars {
        let name = name.to_string_lossy().to_ascii_uppercase();
        if !SECRET_NAME_PARTS.iter().any(|p| name.contains(p)) {
            continue;
        }
        let mut alternatives: Vec<String> = value
            .as_bytes()
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .map(|l| l.trim_ascii())
            .filter(|l| l.len() >= MIN_ENV_VALUE)
            .map(escape_bytes)
            .collect();
        if alternatives.is_empty() {
            continue;
        }
        // Longest first, so that a line that contains another is taken whole.
        alternatives.sort_by_key(|a| std::cmp::Reverse(a.len()));
        alternatives.dedup();
        let pattern = format!("(?-u:{})", alternatives.join("|"));
        if let Ok(rule) = Rule::new(
            format!("env:{name}"),
            format!("the value of the environment variable {name}"),
            &pattern,
        ) {
            out.push(rule);
        }
    }
    out
}

/// A regular expression matching `bytes` literally.
fn escape_bytes(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        if b.is_ascii_alphanumeric() {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\x{b:02X}"));
        }
    }
    s
}

/// The process-wide rules.
struct Registry {
    /// This process's secret-looking environment values.
    env: Vec<Rule>,
    /// Rules of the policies parsed so far.
    policies: Vec<Rule>,
    /// Every built-in rule and `policies`.
    known: Arc<Scanner>,
    /// `known` and `env`.
    redactor: Arc<Scanner>,
}

impl Registry {
    fn rebuild(&mut self) {
        let scanner = |extra: Vec<Rule>| {
            Arc::new(Scanner {
                disabled: Vec::new(),
                extra,
            })
        };
        self.known = scanner(self.policies.clone());
        self.redactor = scanner(self.env.iter().chain(&self.policies).cloned().collect());
    }
}

fn registry() -> &'static RwLock<Registry> {
    static R: OnceLock<RwLock<Registry>> = OnceLock::new();
    R.get_or_init(|| {
        let mut r = Registry {
            env: env_rules(std::env::vars_os()),
            policies: Vec::new(),
            known: Arc::default(),
            redactor: Arc::default(),
        };
        r.rebuild();
        RwLock::new(r)
    })
}

/// Add a policy's rule to what [`redactor`] redacts and [`known`] finds (the policy parser
/// calls this for every pattern it reads, so output is redacted by the rules of every policy
/// this process saw).
pub fn register(rule: &Rule) {
    let seen = |r: &Registry| {
        r.policies
            .iter()
            .any(|x| x.name == rule.name && x.pattern() == rule.pattern())
    };
    let lock = registry();
    if seen(&lock.read().unwrap_or_else(|e| e.into_inner())) {
        return;
    }
    let mut r = lock.write().unwrap_or_else(|e| e.into_inner());
    if seen(&r) || r.policies.len() >= MAX_REGISTERED {
        return;
    }
    r.policies.push(rule.clone());
    r.rebuild();
}

/// The scanner output is redacted with: every built-in rule, the rules of every policy this
/// process has parsed, and this process's secret-looking environment values.
pub fn redactor() -> Arc<Scanner> {
    registry()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .redactor
        .clone()
}

/// Every built-in rule and the rules of every policy this process has parsed: what a request
/// is scanned with before its target (and so its policy) is known.
pub fn known() -> Arc<Scanner> {
    registry()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .known
        .clone()
}

/// `text` redacted by [`redactor`].
pub fn redact(text: &str) -> Cow<'_, str> {
    match redactor().redact_str(text) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(s) => Cow::Owned(s),
    }
}

/// `bytes` redacted by [`redactor`].
pub fn redact_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    match redactor().redact(bytes) {
        Cow::Borrowed(_) => Cow::Borrowed(bytes),
        Cow::Owned(v) => Cow::Owned(v),
    }
}

fn redact_in_place(s: &mut String) {
    if let Cow::Owned(r) = redact(s) {
        *s = r;
    }
}

/// Redact what a queue transition stores that did not come from a validated request: the
/// record's error message, the event's reason and actor, and every artifact. The request's
/// own fields (task, agent, title) were validated at enqueue and stay as the chain's first
/// record has them; ids, statuses and the lease owner are identities and are never changed.
pub fn redact_transition(
    record: &mut crate::request::model::Record,
    event: &mut crate::request::model::Event,
    artifacts: &mut [crate::request::model::Artifact],
) {
    if let Some(e) = &mut record.error {
        redact_in_place(&mut e.message);
    }
    if let Some(reason) = &mut event.reason {
        redact_in_place(reason);
    }
    redact_in_place(&mut event.actor);
    for a in artifacts {
        if let Cow::Owned(v) = redact_bytes(&a.data) {
            a.data = v;
        }
    }
}

/// Redact the messages and fields of `problems` (they quote paths, values and field names of
/// the request).
pub fn redact_problems(problems: &mut [crate::error::Problem]) {
    for p in problems {
        redact_in_place(&mut p.message);
        if let Some(f) = &mut p.field {
            redact_in_place(f);
        }
    }
}

/// A writer that redacts what goes through it with [`redactor`]: the log writer of the
/// binary. Each `write` is redacted as a whole, so it must carry whole lines (the `tracing`
/// formatter writes each event with one call); a secret split across two writes is not found.
pub struct Redacting<W>(pub W);

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&redact_bytes(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// What of an output tail may be stored. A tail that was cut (`truncated`) may begin inside a
/// secret whose start was dropped, where no rule can recognise it: its first, partial line
/// is dropped. When the tail has no line break, its first word (up to the first whitespace)
/// is dropped instead; a secret does not hold whitespace.
pub fn cut_tail(tail: &[u8], truncated: bool) -> &[u8] {
    if !truncated {
        return tail;
    }
    let at = tail
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .or_else(|| tail.iter().position(|b| b.is_ascii_whitespace()))
        .map_or(tail.len(), |i| i + 1);
    &tail[at..]
}

/// [`cut_tail`] for text cut to its end (a hook's message).
pub fn cut_tail_str(tail: &str) -> &str {
    let kept = cut_tail(tail.as_bytes(), true);
    &tail[tail.len() - kept.len()..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";

    fn rule_of(s: &Scanner, text: &str) -> Option<String> {
        s.find(text.as_bytes()).map(|h| h.rule.to_owned())
    }

    #[test]
    fn builtin_rules() {
        let s = Scanner::builtin();
        for (line, rule) in [
            ("-----BEGIN OPENSSH PRIVATE KEY-----", "private-key"),
            ("key_id = AKIAIOSFODNN7EXAMPLE", "aws-access-key-id"),
            (
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws-secret-access-key",
            ),
            (&format!("token: {TOKEN}"), "github-token"),
            ("glpat-abcdefghij0123456789", "gitlab-token"),
            ("xoxb-1234567890-abcdefghij", "slack-token"),
            ("let password = \"s3cr3t-value\";", "generic-password"),
        ] {
            assert_eq!(rule_of(&s, line).as_deref(), Some(rule), "{line}");
        }
        for line in ["password = \"${PASSWORD}\"", "AKIA is a prefix", "é AKIA"] {
            assert_eq!(rule_of(&s, line), None, "{line}");
        }
    }

    /// The literals (and gates) only spare work: over texts made of the rules' own literals
    /// and keywords in any case, separators, quotes and token characters, running every rule
    /// on every text finds exactly what the scanner finds.
    #[test]
    fn the_literals_never_change_what_is_found() {
        let b = builtins();
        let everything = |text: &[u8]| {
            let mut out: Vec<(&str, Range<usize>)> = Vec::new();
            for r in &b.rules {
                for m in r.regex().find_iter(text) {
                    if !m.is_empty() {
                        out.push((r.name, m.range()));
                    }
                }
            }
            out.sort_by_key(|(_, r)| (r.start, r.end));
            out
        };
        let scanner = Scanner::builtin();
        let mut fragments: Vec<&str> = LITERALS
            .iter()
            .flat_map(|(_, l)| l.iter().copied())
            .collect();
        fragments.extend([
            "password",
            "passwd",
            "pwd",
            "secret",
            "api_key",
            "apikey",
            "access_token",
            "auth_token",
            "client_secret",
            "aws_secret_access_key",
            "aws_secret_key",
            "awssecretkey",
            "_",
            "-",
            " ",
            "  ",
            "=",
            ":",
            "\"",
            "'",
            "\n",
            "$",
            "key",
            "token",
            "PRIVATE KEY",
            "-----",
            "BEGIN",
            "RSA",
            "OPENSSH",
            "services/",
            "workflows/",
            "IOSFODNN7EXAMPLE",
            "0123456789abcdefghij",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
            "s3cr3t-value",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "é",
            "{",
            "%",
        ]);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut found = 0;
        for _ in 0..40_000 {
            let mut text = Vec::new();
            for _ in 0..1 + next() % 10 {
                let f = fragments[(next() % fragments.len() as u64) as usize];
                for c in f.bytes() {
                    text.push(match next() % 4 {
                        0 => c.to_ascii_uppercase(),
                        1 => c.to_ascii_lowercase(),
                        _ => c,
                    });
                }
            }
            let all = everything(&text);
            let mut hits: Vec<(&str, Range<usize>)> = scanner
                .find_all(&text)
                .into_iter()
                .map(|h| (h.rule, h.range))
                .collect();
            hits.sort_by_key(|(_, r)| (r.start, r.end));
            assert_eq!(hits, all, "{}", String::from_utf8_lossy(&text));
            found += usize::from(!all.is_empty());
        }
        assert!(
            found > 300,
            "the texts find secrets often enough to mean something: {found}"
        );
    }

    #[test]
    fn invisible_characters_do_not_hide_a_secret() {
        let s = Scanner::builtin();
        for sep in [
            "\u{200b}",
            "\u{feff}",
            "\u{ad}",
            "\u{2060}",
            "\u{e0041}",
            "\u{200d}\u{200c}",
        ] {
            let hidden = format!("x {}{sep}{} y", &TOKEN[..10], &TOKEN[10..]);
            let hit = s.find(hidden.as_bytes()).expect(sep);
            assert_eq!(hit.rule, "github-token");
            // The range covers the token with what was hidden in it, in the original text.
            assert_eq!(&hidden[hit.range.clone()], &hidden[2..hidden.len() - 2]);
            assert_eq!(
                s.redact_str(&hidden),
                "x [redacted github-token] y",
                "{sep:?}"
            );
        }
    }

    #[test]
    fn disabled_and_extra_rules() {
        let disabled: BTreeSet<String> = ["generic-password".to_owned()].into();
        let extra = vec![Rule::new("corp", "a corp token", "corp_[a-z0-9]{16}").expect("valid")];
        let s = Scanner::new(&disabled, extra);
        assert_eq!(rule_of(&s, "password = \"hunter2hunter2\""), None);
        assert_eq!(
            rule_of(&s, "x corp_0123456789abcdef y").as_deref(),
            Some("corp")
        );
        assert!(!s.names().contains(&"generic-password"));
        assert!(s.names().contains(&"corp"));
    }

    #[test]
    fn anchors_of_a_policy_pattern_mean_lines() {
        // Text is scanned many lines at once: `^` and `$` must still mean a line.
        let rule = Rule::new("line", "x", "^CORP_KEY=[a-z]+$").expect("valid");
        let s = Scanner::new(&BTreeSet::new(), vec![rule]);
        assert_eq!(
            rule_of(&s, "a\r\nCORP_KEY=abc\r\nb").as_deref(),
            Some("line")
        );
        assert_eq!(rule_of(&s, "a CORP_KEY=abc"), None);
    }

    #[test]
    fn redaction_replaces_every_match_and_keeps_the_rest() {
        let s = Scanner::builtin();
        let text = format!("a {TOKEN} b AKIAIOSFODNN7EXAMPLE c {TOKEN}\n");
        assert_eq!(
            s.redact_str(&text),
            "a [redacted github-token] b [redacted aws-access-key-id] c [redacted github-token]\n"
        );
        assert!(matches!(s.redact_str("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_private_key_is_redacted_whole() {
        let s = Scanner::builtin();
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAAAA\n-----END RSA PRIVATE KEY-----";
        assert_eq!(
            s.redact_str(&format!("before\n{key}\nafter")),
            "before\n[redacted private-key]\nafter"
        );
        // Cut short: to the end.
        assert_eq!(
            s.redact_str("x\n-----BEGIN EC PRIVATE KEY-----\nMHcC\n"),
            "x\n[redacted private-key]"
        );
        // A tail that starts inside the key: from the start to its END line.
        assert_eq!(
            s.redact_str("MIIEow\nAAAA\n-----END RSA PRIVATE KEY-----\nok"),
            "[redacted private-key]\nok"
        );
    }

    #[test]
    fn environment_values_of_secret_looking_names() {
        let vars = [
            ("GITHUB_TOKEN", "plain-random-value-without-shape"),
            ("DB_PASSWORD", "line-one-secret\nline-two-secret\nshort"),
            ("HOME", "/home/someone-long"),
            ("API_KEY", "1"),
        ]
        .map(|(k, v)| (k.into(), v.into()));
        let rules = env_rules(vars);
        let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["env:GITHUB_TOKEN", "env:DB_PASSWORD"]);
        let s = Scanner {
            disabled: Vec::new(),
            extra: rules,
        };
        assert_eq!(
            s.redact_str(
                "got plain-random-value-without-shape and line-two-secret, /home/someone-long"
            ),
            "got [redacted env:GITHUB_TOKEN] and [redacted env:DB_PASSWORD], /home/someone-long"
        );
    }

    #[test]
    fn a_cut_tail_loses_its_partial_first_line() {
        // The tail starts inside a token: what is left of it no rule would find.
        let cut = &TOKEN[6..];
        let tail = format!("{cut} trailing\nnext line\n");
        assert_eq!(cut_tail(tail.as_bytes(), true), b"next line\n");
        assert_eq!(cut_tail(tail.as_bytes(), false), tail.as_bytes());
        assert_eq!(cut_tail(format!("{cut} rest").as_bytes(), true), b"rest");
        assert_eq!(cut_tail(cut.as_bytes(), true), b"");
        assert_eq!(cut_tail_str("ab\u{e9}cd\nok"), "ok");
    }

    #[test]
    fn registered_rules_are_redacted_by_the_process_redactor() {
        let rule = Rule::new("registry-test", "x", "zz-registry-[0-9]{6}").expect("valid");
        assert_eq!(redact("a zz-registry-123456 b"), "a zz-registry-123456 b");
        register(&rule);
        register(&rule);
        assert_eq!(
            redact("a zz-registry-123456 b"),
            "a [redacted registry-test] b"
        );
        assert_eq!(redact(&format!("t {TOKEN}")), "t [redacted github-token]");
    }

    #[test]
    fn the_log_writer_redacts_each_line() {
        use std::io::Write;
        let mut w = Redacting(Vec::new());
        // As the formatter writes: one whole line per call.
        let line = format!("{{\"msg\":\"got {TOKEN}\"}}\n");
        w.write_all(line.as_bytes()).expect("writes");
        assert_eq!(
            String::from_utf8(w.0).expect("utf-8"),
            "{\"msg\":\"got [redacted github-token]\"}\n"
        );
    }

    #[test]
    fn markers_are_safe_in_json() {
        assert_eq!(marker("a\"b\\c d"), "[redacted a-b-c-d]");
    }
}
