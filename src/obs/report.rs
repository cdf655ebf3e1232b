//! The report a lead opens on Monday morning (`git hyperion report`): what the queue did over a
//! window, as numbers ([`Report`], its JSON form) and as one self-contained HTML page
//! ([`Report::to_html`]).
//!
//! The numbers come from the same read of every record as `list` and `metrics`
//! ([`crate::queue::Queue::list`], the enqueue-to-landed latency of
//! [`super::metrics::landing_latency`], dead letters by [`super::metrics::code_label`]), plus
//! two things the records do not hold: the checks' durations, from the notes on the landed
//! commits (`check: NAME STATUS Nms`, what [`crate::gate::land::read_note`] reads), and what an
//! agent spent, from the transcript a request made by `git hyperion run` carries (read by the
//! caller, which knows agents: this layer does not).
//!
//! The page has no script and loads nothing: inline CSS, charts as inline SVG drawn here, and a
//! Content-Security-Policy that forbids every load. Each chart element carries its numbers in
//! `data-*` attributes, so a test (or a person's own script) reads the data back from the DOM.
//! Every string from a record (agents, codes, check names) is hostile: it is HTML-escaped in
//! text and attributes alike, control characters shown as `\u{…}`, and clipped where shown.
//!
//! [`Report::of_records`] is pure: records and what was read beside them in, numbers out.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use serde::Serialize;

use super::metrics::{code_label, landing_latency};
use crate::Result;
use crate::queue::{Filter, Queue};
use crate::request::model::{Record, Status};
use crate::tui::clip;

/// At most this many agents, failure codes and checks are listed (the busiest, the most
/// frequent, the slowest); the rest are counted in `…_more`.
pub const MAX_ROWS: usize = 30;

/// Hours shown one bar each up to this many; a longer window is shown by day.
const MAX_HOURLY: i64 = 24 * 14;

/// What a request spent beyond its attempts: the agent run's totals from its transcript.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Spent {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Dollars, when the agent's CLI reports them.
    pub usd: Option<f64>,
}

/// One check run as a landed commit's note records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRun {
    pub name: String,
    pub status: String,
    pub duration_ms: u64,
    /// With batched checks, the combined tree it ran on: one run for every request noted.
    pub tree: Option<String>,
}

/// What is stored about one request beside its record.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    pub checks: Vec<CheckRun>,
    pub spent: Option<Spent>,
}

/// The report's numbers (the JSON of `report --format json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The window: records last updated at or after `since`, up to `until`.
    pub since: jiff::Timestamp,
    pub until: jiff::Timestamp,
    /// Requests in the window, any status.
    pub requests: usize,
    /// Landed (applied now, or rolled back since) and dead letters, in the window.
    pub landed: usize,
    pub dead: usize,
    /// `landed / (landed + dead)`; `None` when nothing finished.
    pub success_rate: Option<f64>,
    /// Width of a bucket of `buckets`, in seconds (3600, or 86400 for windows over 14 days).
    pub bucket_secs: i64,
    /// Landed (`applied`, at its `updated_at`) and dead letters per bucket, oldest first; every
    /// bucket of the window, empty ones too.
    pub buckets: Vec<Bucket>,
    pub latency: Latency,
    /// Dead letters by error code, most first.
    pub failures: Vec<Failure>,
    pub failures_more: usize,
    /// Per agent, most requests first.
    pub agents: Vec<AgentRow>,
    pub agents_more: usize,
    /// Per check name, slowest (longest run) first.
    pub checks: Vec<CheckRow>,
    pub checks_more: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bucket {
    pub start: jiff::Timestamp,
    pub landed: usize,
    pub dead: usize,
}

/// Enqueue-to-landed latency of the `applied` requests, in seconds (nearest rank).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failure {
    /// A stable error code, or `other` for one hyperion does not know (as in `metrics`).
    pub code: String,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgentRow {
    pub agent: String,
    pub requests: usize,
    pub landed: usize,
    pub dead: usize,
    pub success_rate: Option<f64>,
    /// Cost: leases counted against its requests.
    pub attempts: u64,
    /// Cost: check time of its landed requests, as their notes record it.
    pub check_ms: u64,
    /// Cost: what its agent runs spent, from the transcripts (requests made by `run`).
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub usd: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckRow {
    pub name: String,
    pub runs: usize,
    pub failed: usize,
    pub mean_ms: u64,
    pub max_ms: u64,
    pub total_ms: u64,
}

/// The check runs a landed commit's note lists (`check: NAME STATUS Nms` lines, and
/// `checked: as part of a batch of N at tree T` when they ran batched).
pub fn note_checks(note: &str) -> Vec<CheckRun> {
    let tree = note.lines().find_map(|l| {
        l.strip_prefix("checked: ")
            .and_then(|rest| rest.rsplit_once(" at tree "))
            .map(|(_, t)| t.trim().to_owned())
    });
    note.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("check: ")?;
            let (rest, ms) = rest.rsplit_once(' ')?;
            let (name, status) = rest.rsplit_once(' ')?;
            let duration_ms = ms.strip_suffix("ms")?.parse().ok()?;
            Some(CheckRun {
                name: name.to_owned(),
                status: status.to_owned(),
                duration_ms,
                tree: tree.clone(),
            })
        })
        .collect()
}

impl Report {
    /// Read the queue: records updated since `since` (as `list --since`), the notes of the
    /// landed ones, and what `spent` says each request's agent spent.
    pub fn read(
        queue: &Queue,
        since: jiff::Timestamp,
        until: jiff::Timestamp,
        spent: impl Fn(&Record) -> Result<Option<Spent>>,
    ) -> Result<Report> {
        let records = queue.list(&Filter {
            since: Some(since),
            ..Filter::default()
        })?;
        let repo = queue.store().repo();
        let mut stored = HashMap::new();
        for r in &records {
            let mut s = Stored {
                spent: spent(r)?,
                ..Stored::default()
            };
            if let Some(oid) = r
                .landed_commit
                .as_deref()
                .and_then(|c| gix::ObjectId::from_hex(c.as_bytes()).ok())
                && repo.find_commit(oid).is_ok()
                && let Some(note) = crate::gate::land::read_note(repo, oid)?
            {
                s.checks = note_checks(&note);
            }
            if !s.checks.is_empty() || s.spent.is_some() {
                stored.insert(r.id.clone(), s);
            }
        }
        Ok(Report::of_records(&records, &stored, since, until))
    }

    /// The numbers of `records` (those of the window) and what is `stored` beside them.
    pub fn of_records(
        records: &[Record],
        stored: &HashMap<String, Stored>,
        since: jiff::Timestamp,
        until: jiff::Timestamp,
    ) -> Report {
        // Whole seconds, as the page shows them.
        let whole = |t: jiff::Timestamp| jiff::Timestamp::from_second(t.as_second()).unwrap_or(t);
        let (since, until) = (whole(since), whole(until.max(since)));
        let span = until.as_second() - since.as_second();
        let bucket_secs = if span <= MAX_HOURLY * 3600 {
            3600
        } else {
            86400
        };
        let first = since.as_second().div_euclid(bucket_secs) * bucket_secs;
        let n = ((until.as_second() - first) / bucket_secs + 1) as usize;
        let mut buckets: Vec<Bucket> = (0..n)
            .map(|i| Bucket {
                start: jiff::Timestamp::from_second(first + i as i64 * bucket_secs)
                    .unwrap_or(since),
                landed: 0,
                dead: 0,
            })
            .collect();
        // A record from the future (a clock ahead) counts in the last bucket.
        let bucket_of = |t: jiff::Timestamp| {
            (((t.as_second() - first).max(0) / bucket_secs) as usize).min(n - 1)
        };

        let mut latencies = Vec::new();
        let mut failures: BTreeMap<String, usize> = BTreeMap::new();
        let mut agents: BTreeMap<&str, AgentRow> = BTreeMap::new();
        // Runs by check name; batched runs once per (name, tree).
        let mut checks: BTreeMap<&str, Vec<(u64, bool)>> = BTreeMap::new();
        let mut batched = std::collections::HashSet::new();
        let (mut landed, mut dead) = (0, 0);

        for r in records {
            let a = agents.entry(r.agent.as_str()).or_insert_with(|| AgentRow {
                agent: r.agent.clone(),
                requests: 0,
                landed: 0,
                dead: 0,
                success_rate: None,
                attempts: 0,
                check_ms: 0,
                input_tokens: 0,
                output_tokens: 0,
                usd: None,
            });
            a.requests += 1;
            a.attempts += u64::from(r.attempts);
            if r.landed_commit.is_some() {
                landed += 1;
                a.landed += 1;
            }
            if r.status == Status::Applied {
                buckets[bucket_of(r.updated_at)].landed += 1;
            }
            if let Some(d) = landing_latency(r) {
                latencies.push(d);
            }
            if r.status == Status::Dead {
                dead += 1;
                a.dead += 1;
                buckets[bucket_of(r.updated_at)].dead += 1;
                *failures
                    .entry(code_label(r.error.as_ref().map(|e| e.code.as_str())))
                    .or_default() += 1;
            }
            let Some(s) = stored.get(&r.id) else { continue };
            for c in &s.checks {
                a.check_ms += c.duration_ms;
                if let Some(t) = &c.tree
                    && !batched.insert((c.name.as_str(), t.as_str()))
                {
                    continue;
                }
                checks
                    .entry(c.name.as_str())
                    .or_default()
                    .push((c.duration_ms, c.status != "passed"));
            }
            if let Some(sp) = &s.spent {
                a.input_tokens += sp.input_tokens;
                a.output_tokens += sp.output_tokens;
                if let Some(usd) = sp.usd {
                    a.usd = Some(a.usd.unwrap_or(0.0) + usd);
                }
            }
        }

        let mut agents: Vec<AgentRow> = agents
            .into_values()
            .map(|mut a| {
                a.success_rate = rate(a.landed, a.dead);
                a
            })
            .collect();
        agents.sort_by(|x, y| y.requests.cmp(&x.requests).then(x.agent.cmp(&y.agent)));
        let agents_more = agents.len().saturating_sub(MAX_ROWS);
        agents.truncate(MAX_ROWS);

        let mut failures: Vec<Failure> = failures
            .into_iter()
            .map(|(code, count)| Failure { code, count })
            .collect();
        failures.sort_by(|x, y| y.count.cmp(&x.count).then(x.code.cmp(&y.code)));
        let failures_more = failures.len().saturating_sub(MAX_ROWS);
        failures.truncate(MAX_ROWS);

        let mut checks: Vec<CheckRow> = checks
            .into_iter()
            .map(|(name, runs)| {
                let total_ms: u64 = runs.iter().map(|(ms, _)| ms).sum();
                CheckRow {
                    name: name.to_owned(),
                    runs: runs.len(),
                    failed: runs.iter().filter(|(_, f)| *f).count(),
                    mean_ms: total_ms / runs.len() as u64,
                    max_ms: runs.iter().map(|(ms, _)| *ms).max().unwrap_or(0),
                    total_ms,
                }
            })
            .collect();
        checks.sort_by(|x, y| y.max_ms.cmp(&x.max_ms).then(x.name.cmp(&y.name)));
        let checks_more = checks.len().saturating_sub(MAX_ROWS);
        checks.truncate(MAX_ROWS);

        latencies.sort_by(f64::total_cmp);
        let latency = Latency {
            count: latencies.len(),
            p50: percentile(&latencies, 50),
            p90: percentile(&latencies, 90),
            p99: percentile(&latencies, 99),
        };

        Report {
            since,
            until,
            requests: records.len(),
            landed,
            dead,
            success_rate: rate(landed, dead),
            bucket_secs,
            buckets,
            latency,
            failures,
            failures_more,
            agents,
            agents_more,
            checks,
            checks_more,
        }
    }

    /// The page: self-contained HTML, no script, no load.
    pub fn to_html(&self) -> String {
        let mut o = String::with_capacity(16 * 1024);
        let window = format!("{} to {}", stamp(self.since), stamp(self.until));
        let _ = writeln!(
            o,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
             style-src 'unsafe-inline'\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>hyperion report, {}</title>\n<style>{CSS}</style>\n</head>\n<body>",
            esc(&window)
        );
        let _ = writeln!(
            o,
            "<header><h1>hyperion report</h1><p class=\"window\" data-since=\"{}\" \
             data-until=\"{}\">{}</p></header>",
            stamp(self.since),
            stamp(self.until),
            esc(&window)
        );
        self.summary(&mut o);
        self.buckets_chart(&mut o);
        self.latency_chart(&mut o);
        self.failures_chart(&mut o);
        self.agents_table(&mut o);
        self.checks_chart(&mut o);
        o.push_str(
            "<footer><p><strong>Cost</strong> is what the records carry: <i>attempts</i> (leases counted \
             against an agent's requests), <i>check time</i> (the checks of its landed requests, \
             from the notes on their commits) and, for requests made by <code>git hyperion \
             run</code>, the <i>tokens</i> and <i>dollars</i> its agent runs reported (their \
             transcripts). Latency is from enqueue to landing of the requests applied now; \
             check durations are those of landed requests (a dead letter's are not stored).\
             </p></footer>\n</body>\n</html>\n",
        );
        o
    }

    fn summary(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "<section id=\"summary\" data-requests=\"{}\" data-landed=\"{}\" data-dead=\"{}\" \
             data-success-rate=\"{}\">",
            self.requests,
            self.landed,
            self.dead,
            opt(self.success_rate)
        );
        for (label, value) in [
            ("requests", self.requests.to_string()),
            ("landed", self.landed.to_string()),
            ("dead", self.dead.to_string()),
            ("success", percent(self.success_rate)),
            ("p50 latency", secs_text(self.latency.p50)),
        ] {
            let _ = write!(
                o,
                "<div class=\"tile\"><span class=\"v\">{}</span><span class=\"l\">{}</span></div>",
                esc(&value),
                esc(label)
            );
        }
        o.push_str("\n</section>\n");
    }

    fn buckets_chart(&self, o: &mut String) {
        let per = if self.bucket_secs == 3600 {
            "hour"
        } else {
            "day"
        };
        let _ = writeln!(
            o,
            "<section id=\"per-hour\" data-bucket-secs=\"{}\"><h2>Landed and dead per {per}</h2>",
            self.bucket_secs
        );
        let max = self
            .buckets
            .iter()
            .map(|b| b.landed.max(b.dead))
            .max()
            .unwrap_or(0)
            .max(1);
        let (w, h, left, bottom) = (1200.0, 220.0, 40.0, 24.0);
        let slot = (w - left) / self.buckets.len().max(1) as f64;
        let bar = (slot / 2.0 - 0.5).max(0.5);
        let plot = h - bottom - 8.0;
        let _ = writeln!(
            o,
            "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
             aria-label=\"landed and dead per {per}\">"
        );
        axis(o, left, w, h - bottom, plot, max);
        for (i, b) in self.buckets.iter().enumerate() {
            let x = left + i as f64 * slot;
            let hl = plot * b.landed as f64 / max as f64;
            let hd = plot * b.dead as f64 / max as f64;
            let _ = writeln!(
                o,
                "<g class=\"bucket\" data-hour=\"{t}\" data-landed=\"{l}\" data-dead=\"{d}\">\
                 <title>{t}: {l} landed, {d} dead</title>\
                 <rect class=\"landed\" data-hour=\"{t}\" data-landed=\"{l}\" x=\"{x:.1}\" \
                 y=\"{yl:.1}\" width=\"{bar:.1}\" height=\"{hl:.1}\"></rect>\
                 <rect class=\"dead\" data-hour=\"{t}\" data-dead=\"{d}\" x=\"{xd:.1}\" \
                 y=\"{yd:.1}\" width=\"{bar:.1}\" height=\"{hd:.1}\"></rect></g>",
                t = stamp(b.start),
                l = b.landed,
                d = b.dead,
                yl = h - bottom - hl,
                xd = x + bar,
                yd = h - bottom - hd,
            );
        }
        // Time labels: about eight along the axis.
        let step = (self.buckets.len() / 8).max(1);
        for (i, b) in self.buckets.iter().enumerate().step_by(step) {
            // A label that would run off the right edge is left out.
            if left + i as f64 * slot > w - 80.0 {
                break;
            }
            let label = if self.bucket_secs == 3600 {
                b.start.strftime("%m-%d %H:00").to_string()
            } else {
                b.start.strftime("%Y-%m-%d").to_string()
            };
            let _ = writeln!(
                o,
                "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                left + i as f64 * slot,
                h - 6.0,
                esc(&label)
            );
        }
        o.push_str(
            "</svg>\n<p class=\"legend\"><span class=\"key landed\"></span>landed \
             <span class=\"key dead\"></span>dead</p>\n</section>\n",
        );
    }

    fn latency_chart(&self, o: &mut String) {
        let l = &self.latency;
        let _ = writeln!(
            o,
            "<section id=\"latency\" data-count=\"{}\"><h2>Enqueue to landed</h2>\n\
             <p>{} request(s) applied in the window.</p>",
            l.count, l.count
        );
        let rows: Vec<(String, String, f64)> = [("50", l.p50), ("90", l.p90), ("99", l.p99)]
            .into_iter()
            .map(|(p, v)| (p.to_owned(), secs_text(v), v.unwrap_or(0.0)))
            .collect();
        let max = rows.iter().map(|r| r.2).fold(0.0, f64::max);
        hbars(o, "latency", &rows, max, |o, (p, _, _)| {
            let v = match p.as_str() {
                "50" => l.p50,
                "90" => l.p90,
                _ => l.p99,
            };
            let _ = write!(
                o,
                " data-percentile=\"{}\" data-seconds=\"{}\"",
                esc(p),
                opt(v)
            );
            format!("p{p}")
        });
        o.push_str("</section>\n");
    }

    fn failures_chart(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "<section id=\"failures\" data-more=\"{}\"><h2>Top failure codes</h2>",
            self.failures_more
        );
        if self.failures.is_empty() {
            o.push_str("<p>No dead letters in the window.</p>\n");
        } else {
            let rows: Vec<(&Failure, String, f64)> = self
                .failures
                .iter()
                .map(|f| (f, f.count.to_string(), f.count as f64))
                .collect();
            let max = rows.iter().map(|r| r.2).fold(0.0, f64::max);
            hbars(o, "failure", &rows, max, |o, (f, _, _)| {
                let _ = write!(
                    o,
                    " data-code=\"{}\" data-count=\"{}\"",
                    esc(&f.code),
                    f.count
                );
                f.code.clone()
            });
            more(o, self.failures_more, "code");
        }
        o.push_str("</section>\n");
    }

    fn agents_table(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "<section id=\"agents\" data-more=\"{}\"><h2>Success and cost per agent</h2>",
            self.agents_more
        );
        if self.agents.is_empty() {
            o.push_str("<p>No requests in the window.</p>\n</section>\n");
            return;
        }
        o.push_str(
            "<table><thead><tr><th>agent</th><th>success</th><th class=\"n\">requests</th>\
             <th class=\"n\">landed</th><th class=\"n\">dead</th><th class=\"n\">attempts</th>\
             <th class=\"n\">check time</th><th class=\"n\">tokens in / out</th>\
             <th class=\"n\">dollars</th></tr></thead>\n<tbody>\n",
        );
        for a in &self.agents {
            let rate = a.success_rate.unwrap_or(0.0);
            let _ = writeln!(
                o,
                "<tr class=\"agent\" data-agent=\"{}\" data-requests=\"{}\" data-landed=\"{}\" \
                 data-dead=\"{}\" data-success-rate=\"{}\" data-attempts=\"{}\" \
                 data-check-ms=\"{}\" data-input-tokens=\"{}\" data-output-tokens=\"{}\" \
                 data-usd=\"{}\"><td title=\"{}\">{}</td><td><svg class=\"rate\" viewBox=\"0 0 100 10\" \
                 role=\"img\"><rect class=\"track\" width=\"100\" height=\"10\"></rect>\
                 <rect class=\"landed\" data-agent=\"{}\" data-success-rate=\"{}\" \
                 width=\"{:.1}\" height=\"10\"></rect></svg> {}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{} / {}</td><td class=\"n\">{}</td></tr>",
                esc(&a.agent),
                a.requests,
                a.landed,
                a.dead,
                opt(a.success_rate),
                a.attempts,
                a.check_ms,
                a.input_tokens,
                a.output_tokens,
                opt(a.usd),
                esc(&a.agent),
                esc(&clip(&a.agent, 40)),
                esc(&a.agent),
                opt(a.success_rate),
                rate * 100.0,
                esc(&percent(a.success_rate)),
                a.requests,
                a.landed,
                a.dead,
                a.attempts,
                esc(&ms_text(a.check_ms)),
                a.input_tokens,
                a.output_tokens,
                a.usd.map_or("–".to_owned(), |u| format!("${u:.2}")),
            );
        }
        o.push_str("</tbody></table>\n");
        more(o, self.agents_more, "agent");
        o.push_str("</section>\n");
    }

    fn checks_chart(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "<section id=\"checks\" data-more=\"{}\"><h2>Slowest checks</h2>",
            self.checks_more
        );
        if self.checks.is_empty() {
            o.push_str("<p>No check ran for a request landed in the window.</p>\n");
        } else {
            let rows: Vec<(&CheckRow, String, f64)> = self
                .checks
                .iter()
                .map(|c| {
                    (
                        c,
                        format!(
                            "longest {}, mean {}, {} run(s), {} failed",
                            ms_text(c.max_ms),
                            ms_text(c.mean_ms),
                            c.runs,
                            c.failed
                        ),
                        c.max_ms as f64,
                    )
                })
                .collect();
            let max = rows.iter().map(|r| r.2).fold(0.0, f64::max);
            hbars(o, "check", &rows, max, |o, (c, _, _)| {
                let _ = write!(
                    o,
                    " data-check=\"{}\" data-runs=\"{}\" data-failed=\"{}\" data-max-ms=\"{}\" \
                     data-mean-ms=\"{}\" data-total-ms=\"{}\"",
                    esc(&c.name),
                    c.runs,
                    c.failed,
                    c.max_ms,
                    c.mean_ms,
                    c.total_ms
                );
                c.name.clone()
            });
            more(o, self.checks_more, "check");
        }
        o.push_str("</section>\n");
    }
}

/// Horizontal bars, one per row: `attrs` writes a row's `data-*` attributes and returns its
/// label; the row's second field is the value shown, its third the bar's length against `max`.
fn hbars<T>(
    o: &mut String,
    class: &str,
    rows: &[(T, String, f64)],
    max: f64,
    mut attrs: impl FnMut(&mut String, &(T, String, f64)) -> String,
) {
    let (w, row_h, label_w) = (1200.0, 26.0, 300.0);
    let h = row_h * rows.len() as f64 + 4.0;
    let _ = writeln!(
        o,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\">"
    );
    for (i, row) in rows.iter().enumerate() {
        let y = 2.0 + i as f64 * row_h;
        let len = if max > 0.0 {
            (w - label_w - 320.0) * row.2 / max
        } else {
            0.0
        };
        let _ = write!(o, "<g class=\"{class}\"");
        let label = attrs(o, row);
        let _ = writeln!(
            o,
            "><title>{}: {}</title><text class=\"label\" x=\"{:.1}\" y=\"{:.1}\">{}</text>\
             <rect class=\"bar\" x=\"{label_w}\" y=\"{:.1}\" width=\"{len:.1}\" \
             height=\"{:.1}\"></rect><text class=\"value\" x=\"{:.1}\" y=\"{:.1}\">{}</text>\
             </g>",
            esc(&label),
            esc(&row.1),
            label_w - 8.0,
            y + row_h * 0.65,
            esc(&clip(&label, 40)),
            y + 3.0,
            row_h - 6.0,
            label_w + len + 6.0,
            y + row_h * 0.65,
            esc(&row.1),
        );
    }
    o.push_str("</svg>\n");
}

/// The y axis of the per-hour chart: a base line and the maximum.
fn axis(o: &mut String, left: f64, w: f64, base: f64, plot: f64, max: usize) {
    let _ = writeln!(
        o,
        "<line class=\"axis\" x1=\"{left}\" y1=\"{base}\" x2=\"{w}\" y2=\"{base}\"></line>\
         <line class=\"grid\" x1=\"{left}\" y1=\"{top}\" x2=\"{w}\" y2=\"{top}\"></line>\
         <text class=\"tick\" x=\"{lx}\" y=\"{ty}\">{max}</text>\
         <text class=\"tick\" x=\"{lx}\" y=\"{base}\">0</text>",
        top = base - plot,
        lx = left - 30.0,
        ty = base - plot + 4.0,
    );
}

fn more(o: &mut String, n: usize, what: &str) {
    if n > 0 {
        let _ = writeln!(o, "<p class=\"more\">and {n} more {what}(s)</p>");
    }
}

fn rate(landed: usize, dead: usize) -> Option<f64> {
    let done = landed + dead;
    (done > 0).then(|| landed as f64 / done as f64)
}

/// The nearest-rank percentile `p` of `sorted`.
fn percentile(sorted: &[f64], p: usize) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

fn stamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A number as a `data-*` value: Rust's shortest round-trip form (what JSON prints too), or
/// empty when there is none.
fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| v.to_string())
}

fn percent(v: Option<f64>) -> String {
    v.map_or("–".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

fn secs_text(v: Option<f64>) -> String {
    match v {
        None => "–".to_owned(),
        Some(s) if s < 60.0 => format!("{s:.1} s"),
        Some(s) if s < 3600.0 => format!("{:.1} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

fn ms_text(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        secs_text(Some(ms as f64 / 1000.0))
    }
}

/// `s` safe in HTML text and in a double- or single-quoted attribute: the five markup
/// characters as entities, control characters (which HTML forbids or a reader cannot see) as
/// `\u{…}`.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "\
:root{--landed:#2e7d32;--dead:#c62828;--bar:#1565c0;--ink:#1d2330;--mute:#687083;--line:#d9dde5}\
*{box-sizing:border-box}\
body{margin:0 auto;max-width:1280px;padding:24px 32px;font:14px/1.45 system-ui,-apple-system,\
'Segoe UI',sans-serif;color:var(--ink);background:#fff}\
h1{font-size:24px;margin:0}h2{font-size:17px;margin:28px 0 8px}\
.window{color:var(--mute);margin:4px 0 16px}\
#summary{display:flex;gap:12px;flex-wrap:wrap}\
.tile{border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:140px}\
.tile .v{display:block;font-size:22px;font-weight:600}.tile .l{color:var(--mute)}\
svg.chart{width:100%;height:auto;display:block}\
rect.landed,.key.landed{fill:var(--landed);background:var(--landed)}\
rect.dead,.key.dead{fill:var(--dead);background:var(--dead)}\
rect.bar{fill:var(--bar)}rect.track{fill:#eceff4}\
.failure rect.bar{fill:var(--dead)}\
.axis{stroke:var(--ink)}.grid{stroke:var(--line);stroke-dasharray:4 4}\
text{font-size:12px;fill:var(--ink)}text.tick{fill:var(--mute);font-size:11px}\
text.label{text-anchor:end}\
.legend{color:var(--mute)}.key{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}\
table{border-collapse:collapse;width:100%}\
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}\
th{color:var(--mute);font-weight:500}.n{text-align:right;font-variant-numeric:tabular-nums}\
svg.rate{width:100px;height:10px;vertical-align:middle}\
td{max-width:320px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}\
.more,footer{color:var(--mute)}footer{margin-top:32px;border-top:1px solid var(--line)}\
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::model::ErrorInfo;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn record(id: &str, agent: &str, status: Status, created: &str, updated: &str) -> Record {
        Record {
            id: id.to_owned(),
            status,
            dead_class: None,
            task_id: format!("T-{id}"),
            agent: agent.to_owned(),
            title: "t".to_owned(),
            priority: 5,
            kind: None,
            target: None,
            attempts: 1,
            created_at: at(created),
            updated_at: at(updated),
            lease_owner: None,
            leased_until: None,
            lease_secs: None,
            not_before: None,
            error: None,
            landed_commit: (status == Status::Applied).then(|| "0".repeat(40)),
            rolled_back_by: None,
            approval_tiers: Vec::new(),
            approved_by: None,
            dedupe_key: String::new(),
            depends_on: Vec::new(),
            waiting_for: Vec::new(),
        }
    }

    fn dead(id: &str, agent: &str, code: &str, updated: &str) -> Record {
        let mut r = record(id, agent, Status::Dead, "2026-11-30T09:00:00Z", updated);
        r.error = Some(ErrorInfo {
            code: code.to_owned(),
            message: "m".to_owned(),
        });
        r
    }

    fn sample() -> Report {
        let mut records = vec![
            record(
                "a1",
                "alpha",
                Status::Applied,
                "2026-11-30T10:00:00Z",
                "2026-11-30T10:00:10Z",
            ),
            record(
                "a2",
                "alpha",
                Status::Applied,
                "2026-11-30T10:00:00Z",
                "2026-11-30T10:01:40Z",
            ),
            record(
                "b1",
                "beta",
                Status::Applied,
                "2026-11-30T10:00:00Z",
                "2026-11-30T12:30:00Z",
            ),
            dead("b2", "beta", "apply.conflict", "2026-11-30T12:40:00Z"),
            dead("b3", "beta", "check.failed", "2026-11-30T12:50:00Z"),
            dead("b4", "beta", "check.failed", "2026-11-30T10:59:59Z"),
            dead("b5", "beta", "no.such.code", "2026-11-30T10:30:00Z"),
            record(
                "c1",
                "gamma",
                Status::Pending,
                "2026-11-30T12:00:00Z",
                "2026-11-30T12:00:00Z",
            ),
        ];
        records[0].attempts = 3;
        let mut stored = HashMap::new();
        stored.insert(
            "a1".to_owned(),
            Stored {
                checks: note_checks(
                    "request: a1\ncheck: unit passed 1200ms\ncheck: lint passed 30ms\n",
                ),
                spent: Some(Spent {
                    input_tokens: 100,
                    output_tokens: 20,
                    usd: Some(0.5),
                }),
            },
        );
        stored.insert(
            "a2".to_owned(),
            Stored {
                checks: note_checks("check: unit passed 800ms\n"),
                spent: Some(Spent {
                    input_tokens: 1,
                    output_tokens: 2,
                    usd: None,
                }),
            },
        );
        Report::of_records(
            &records,
            &stored,
            at("2026-11-30T09:30:00Z"),
            at("2026-11-30T13:15:00Z"),
        )
    }

    #[test]
    fn the_numbers_are_the_records_counted_by_hour_code_and_agent() {
        let r = sample();
        assert_eq!((r.requests, r.landed, r.dead), (8, 3, 4));
        assert_eq!(r.success_rate, Some(3.0 / 7.0));
        let hours: Vec<(String, usize, usize)> = r
            .buckets
            .iter()
            .map(|b| (stamp(b.start), b.landed, b.dead))
            .collect();
        assert_eq!(
            hours,
            [
                ("2026-11-30T09:00:00Z".to_owned(), 0, 0),
                ("2026-11-30T10:00:00Z".to_owned(), 2, 2),
                ("2026-11-30T11:00:00Z".to_owned(), 0, 0),
                ("2026-11-30T12:00:00Z".to_owned(), 1, 2),
                ("2026-11-30T13:00:00Z".to_owned(), 0, 0),
            ]
        );
        // 10 s, 100 s, 9000 s: nearest rank.
        assert_eq!(r.latency.count, 3);
        assert_eq!(r.latency.p50, Some(100.0));
        assert_eq!(r.latency.p90, Some(9000.0));
        assert_eq!(r.latency.p99, Some(9000.0));
        let failures: Vec<(&str, usize)> = r
            .failures
            .iter()
            .map(|f| (f.code.as_str(), f.count))
            .collect();
        // An unknown code is `other`, as in `metrics`.
        assert_eq!(
            failures,
            [("check.failed", 2), ("apply.conflict", 1), ("other", 1)]
        );
        let beta = &r.agents[0];
        assert_eq!(
            (beta.agent.as_str(), beta.requests, beta.landed, beta.dead),
            ("beta", 5, 1, 4)
        );
        assert_eq!(beta.success_rate, Some(0.2));
        let alpha = &r.agents[1];
        assert_eq!((alpha.attempts, alpha.check_ms), (4, 2030));
        assert_eq!((alpha.input_tokens, alpha.output_tokens), (101, 22));
        assert_eq!(alpha.usd, Some(0.5));
        assert_eq!(r.agents[2].success_rate, None);
        let checks: Vec<(&str, usize, u64, u64)> = r
            .checks
            .iter()
            .map(|c| (c.name.as_str(), c.runs, c.max_ms, c.mean_ms))
            .collect();
        assert_eq!(checks, [("unit", 2, 1200, 1000), ("lint", 1, 30, 30)]);
    }

    #[test]
    fn a_batched_check_counts_once_for_the_requests_it_checked_together() {
        let note = |id: &str| {
            format!(
                "request: {id}\ncheck: unit passed 500ms\n\
                 checked: as part of a batch of 2 at tree abc\n"
            )
        };
        let runs = note_checks(&note("x"));
        assert_eq!(runs[0].tree.as_deref(), Some("abc"));
        let records = [
            record(
                "x",
                "a",
                Status::Applied,
                "2026-11-30T10:00:00Z",
                "2026-11-30T10:00:01Z",
            ),
            record(
                "y",
                "a",
                Status::Applied,
                "2026-11-30T10:00:00Z",
                "2026-11-30T10:00:01Z",
            ),
        ];
        let stored = ["x", "y"]
            .map(|id| {
                (
                    id.to_owned(),
                    Stored {
                        checks: note_checks(&note(id)),
                        spent: None,
                    },
                )
            })
            .into_iter()
            .collect();
        let r = Report::of_records(
            &records,
            &stored,
            at("2026-11-30T10:00:00Z"),
            at("2026-11-30T10:30:00Z"),
        );
        assert_eq!(r.checks[0].runs, 1);
    }

    #[test]
    fn the_page_carries_every_number_in_data_attributes() {
        let html = sample().to_html();
        assert!(
            html.contains("data-hour=\"2026-11-30T10:00:00Z\" data-landed=\"2\" data-dead=\"2\"")
        );
        assert!(html.contains("data-percentile=\"50\" data-seconds=\"100\""));
        assert!(html.contains("data-code=\"check.failed\" data-count=\"2\""));
        assert!(html.contains("data-agent=\"beta\" data-requests=\"5\" data-landed=\"1\""));
        assert!(html.contains(
            "data-check=\"unit\" data-runs=\"2\" data-failed=\"0\" data-max-ms=\"1200\""
        ));
        assert!(!html.contains("<script"), "no script");
        assert!(html.contains("content=\"default-src 'none'; style-src 'unsafe-inline'\""));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no load"
        );
    }

    #[test]
    fn hostile_names_are_text_never_markup() {
        let hostile = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>'\u{1b}[2J";
        let mut r = record(
            "h",
            hostile,
            Status::Applied,
            "2026-11-30T10:00:00Z",
            "2026-11-30T10:00:01Z",
        );
        r.task_id = hostile.to_owned();
        let mut d = dead("d", hostile, "check.failed", "2026-11-30T10:00:02Z");
        d.error.as_mut().unwrap().code = hostile.to_owned();
        let mut stored = HashMap::new();
        stored.insert(
            "h".to_owned(),
            Stored {
                checks: note_checks(&format!("check: {hostile} passed 5ms\n")),
                spent: None,
            },
        );
        let html = Report::of_records(
            &[r, d],
            &stored,
            at("2026-11-30T10:00:00Z"),
            at("2026-11-30T10:30:00Z"),
        )
        .to_html();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains('\u{1b}'), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img"));
        assert!(html.contains("\\u{1b}[2J"));
    }

    #[test]
    fn a_long_window_is_shown_by_day_and_a_record_from_the_future_in_the_last_bucket() {
        let records = [record(
            "f",
            "a",
            Status::Applied,
            "2026-11-30T10:00:00Z",
            "2027-01-01T00:00:00Z",
        )];
        let r = Report::of_records(
            &records,
            &HashMap::new(),
            at("2026-10-01T00:00:00Z"),
            at("2026-11-30T12:00:00Z"),
        );
        assert_eq!(r.bucket_secs, 86400);
        assert_eq!(r.buckets.len(), 61);
        assert_eq!(r.buckets.last().unwrap().landed, 1);
    }
}
