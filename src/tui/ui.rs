//! `top` drawn into a ratatui [`Frame`]: a header with the queue's counts, the request list,
//! the event stream (dead letters in red), the detail pane, the keys, and a status bar.
//!
//! Every string that comes from a request, a record, an event or a check goes through
//! [`shown_line`] first. The layout degrades with the size: the event stream goes below ten
//! rows, columns go on narrow terminals, and any size, however small, draws without panicking.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState};

use super::shown_line;
use super::state::{Detail, State};
use crate::gate::inspect::Inspection;
use crate::request::model::{Record, Status};

/// The keys, as `?` shows them (docs/observability.md has the same table).
pub const KEYS: [(&str, &str); 14] = [
    ("↑ ↓  j k", "select a request (scroll the detail pane)"),
    ("PgUp PgDn g G", "a page up or down, first, last"),
    ("Enter", "open the detail pane of the selected request"),
    (
        "Esc",
        "close the detail pane, the keys, the / filter; else quit",
    ),
    ("s  S", "next / previous status filter"),
    ("a  A", "next / previous agent filter"),
    (
        "/",
        "filter by text in id, agent, task, title (Enter keeps it)",
    ),
    ("c", "clear every filter"),
    ("+  -", "refresh less / more often"),
    ("r", "refresh now"),
    ("?", "show or hide the keys"),
    ("q  Ctrl-C", "quit"),
    ("", ""),
    ("", "dead letters are red in the event stream"),
];

/// The colour of a status.
pub fn status_style(s: Status) -> Style {
    let fg = match s {
        Status::AwaitingApproval => Color::Magenta,
        Status::Pending => Color::Reset,
        Status::Leased => Color::Yellow,
        Status::Applied => Color::Green,
        Status::Dead => Color::Red,
        Status::RolledBack => Color::Blue,
    };
    Style::default().fg(fg)
}

/// The style of an error: a dead letter's event, a failed poll, a record's error.
pub fn error_style() -> Style {
    Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
}

fn dim() -> Style {
    Style::default().add_modifier(Modifier::DIM)
}

fn hms(t: jiff::Timestamp) -> String {
    t.strftime("%H:%M:%S").to_string()
}

fn full_time(t: jiff::Timestamp) -> String {
    t.round(jiff::Unit::Second)
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn status_label(r: &Record) -> String {
    match r.dead_class {
        Some(c) => format!("{}:{c}", r.status),
        None if !r.waiting_for.is_empty() => format!("{}:waiting", r.status),
        None => r.status.to_string(),
    }
}

/// Draw the whole screen.
pub fn draw(frame: &mut Frame, state: &State) {
    let area = frame.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    let [body, bar] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(area);
    status_bar(frame, bar, state);
    if body.height >= 3 {
        let [head, main] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(body);
        header(frame, head, state);
        match &state.detail {
            Some(d) => detail(frame, main, d, state.scroll),
            None if main.height >= 12 => {
                // The list takes the rows it needs (a header and borders around the
                // requests), leaving the stream at least a third; the stream the rest.
                let least = (main.height / 3).max(5);
                let wanted = u16::try_from(state.visible().len())
                    .unwrap_or(u16::MAX)
                    .saturating_add(3);
                let rows = wanted.clamp(6, main.height - least);
                let [list, stream] =
                    Layout::vertical([Constraint::Length(rows), Constraint::Min(0)]).areas(main);
                requests(frame, list, state);
                event_stream(frame, stream, state);
            }
            None => requests(frame, main, state),
        }
    } else if body.height > 0 {
        match &state.detail {
            Some(d) => detail(frame, body, d, state.scroll),
            None => requests(frame, body, state),
        }
    }
    if state.help {
        help(frame, area);
    }
}

fn header(frame: &mut Frame, area: Rect, state: &State) {
    let mut spans = vec![Span::styled(
        "hyperion top ",
        Style::default().add_modifier(Modifier::BOLD),
    )];
    for s in Status::ALL {
        let n = state.records.iter().filter(|r| r.status == s).count();
        // The rarer statuses only when there are some: the line fits 80 columns.
        let rare = matches!(s, Status::AwaitingApproval | Status::RolledBack);
        if rare && n == 0 {
            continue;
        }
        let name = match s {
            Status::AwaitingApproval => "awaiting",
            s => s.as_str(),
        };
        let style = if n == 0 { dim() } else { status_style(s) };
        spans.push(Span::raw(" "));
        spans.push(Span::styled(format!("{name} {n}"), style));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn requests(frame: &mut Frame, area: Rect, state: &State) {
    let visible = state.visible();
    let title = format!(" requests {}/{} ", visible.len(), state.records.len());
    let block = Block::default().borders(Borders::ALL).title(title);
    let w = area.width;
    // Columns go as the terminal narrows: task first, then the update time, then the agent.
    let (agent, task, updated) = (w >= 56, w >= 100, w >= 70);
    let mut widths = vec![Constraint::Length(16), Constraint::Length(17)];
    let mut head = vec!["ID", "STATUS"];
    if agent {
        widths.push(Constraint::Length(14));
        head.push("AGENT");
    }
    if task {
        widths.push(Constraint::Length(12));
        head.push("TASK");
    }
    if updated {
        widths.push(Constraint::Length(8));
        head.push("UPDATED");
    }
    widths.push(Constraint::Min(0));
    head.push("TITLE");
    let rows = visible.iter().map(|r| {
        let mut cells = vec![
            Cell::from(shown_line(&r.id)),
            Cell::from(status_label(r)).style(status_style(r.status)),
        ];
        if agent {
            cells.push(Cell::from(shown_line(&r.agent)));
        }
        if task {
            cells.push(Cell::from(shown_line(&r.task_id)));
        }
        if updated {
            cells.push(Cell::from(hms(r.updated_at)));
        }
        cells.push(Cell::from(shown_line(&r.title)));
        Row::new(cells)
    });
    let table = Table::new(rows, widths)
        .header(Row::new(head).style(Style::default().add_modifier(Modifier::BOLD)))
        .block(block)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut ts = TableState::default().with_selected(state.selected());
    frame.render_stateful_widget(table, area, &mut ts);
}

fn event_stream(frame: &mut Frame, area: Rect, state: &State) {
    let events = state.visible_events();
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" events {} ", events.len()));
    let room = area.height.saturating_sub(2) as usize;
    // Newest first.
    let lines: Vec<Line> = events
        .iter()
        .rev()
        .take(room)
        .map(|e| {
            let text = format!(
                "{}  {}  {}  {}",
                hms(e.at),
                shown_line(e.id.get(..8).unwrap_or(&e.id)),
                shown_line(&e.agent),
                shown_line(&e.describe())
            );
            let style = if e.is_error() {
                error_style()
            } else {
                status_style(e.status)
            };
            Line::styled(text, style)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn detail(frame: &mut Frame, area: Rect, d: &Detail, scroll: u16) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" request {} ", shown_line(d.id())))
        .title_bottom(" Esc close · ↑↓ scroll ");
    let lines = match d {
        Detail::Loading(_) => vec![Line::raw("reading…")],
        Detail::Failed { message, .. } => vec![Line::styled(
            format!("cannot inspect: {}", shown_line(message)),
            error_style(),
        )],
        Detail::Ready(i) => detail_lines(i),
    };
    frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), area);
}

/// Lines of one artifact shown in the pane; the rest is one `inspect` away.
const ARTIFACT_LINES: usize = 40;

/// The detail pane's text: the record, its error, the payload's paths, the chain, the
/// artifacts (their first lines), the landing and `doctor`'s findings.
pub fn detail_lines(i: &Inspection) -> Vec<Line<'static>> {
    let r = &i.record;
    let mut o: Vec<Line<'static>> = Vec::new();
    let field = |name: &str, value: String| Line::raw(format!("{name:<10}{value}"));
    o.push(Line::from(vec![
        Span::raw(format!("{:<10}", "status")),
        Span::styled(status_label(r), status_style(r.status)),
    ]));
    o.push(field("task", shown_line(&r.task_id)));
    o.push(field("agent", shown_line(&r.agent)));
    o.push(field("title", shown_line(&r.title)));
    o.push(field(
        "priority",
        format!("{}   attempts {}", r.priority, r.attempts),
    ));
    o.push(field(
        "created",
        format!(
            "{}   updated {}",
            full_time(r.created_at),
            full_time(r.updated_at)
        ),
    ));
    if let Some(w) = &r.lease_owner {
        let until = r.leased_until.map(full_time).unwrap_or_default();
        o.push(field("lease", format!("{} until {until}", shown_line(w))));
    }
    if let Some(e) = &r.error {
        o.push(Line::styled(
            format!(
                "{:<10}[{}] {}",
                "error",
                shown_line(&e.code),
                shown_line(&e.message)
            ),
            error_style(),
        ));
    }
    match &i.landed {
        Some(l) => {
            let present = if l.present { "" } else { " (not here)" };
            o.push(field(
                "landed",
                format!("{}{present}", shown_line(&l.commit)),
            ));
        }
        None if r.status == Status::Applied => o.push(field("landed", "?".to_owned())),
        None => {}
    }

    let req = &i.request;
    o.push(Line::raw(""));
    o.push(Line::styled(
        format!("changes ({})", req.changes.len()),
        Style::default().add_modifier(Modifier::BOLD),
    ));
    for c in &req.changes {
        let op = serde_json::to_value(c.operation).expect("an operation serialises");
        let op = op.as_str().unwrap_or("?").to_owned();
        let path = match &c.from {
            Some(f) => format!("{} -> {}", shown_line(f), shown_line(&c.path)),
            None => shown_line(&c.path),
        };
        o.push(Line::raw(format!("  {op:<7} {path}")));
    }
    if !req.checks.is_empty() {
        o.push(Line::raw(format!(
            "  checks: {}",
            shown_line(&req.checks.join(", "))
        )));
    }

    o.push(Line::raw(""));
    o.push(Line::styled(
        format!("chain ({}, oldest first)", i.chain.len()),
        Style::default().add_modifier(Modifier::BOLD),
    ));
    for l in &i.chain {
        let e = &l.item.event;
        let from = e.from.map(|s| s.as_str()).unwrap_or("-");
        let mut s = format!(
            "  {}  {:<9} {from} -> {}  {}",
            full_time(e.at),
            e.action.as_str(),
            e.to,
            shown_line(&e.actor)
        );
        if let Some(code) = &e.code {
            s.push_str(&format!("  [{}]", shown_line(code)));
        }
        if let Some(reason) = &e.reason {
            s.push_str(&format!("  ({})", shown_line(reason)));
        }
        let style = if e.to == Status::Dead {
            error_style()
        } else {
            Style::default()
        };
        o.push(Line::styled(s, style));
    }

    o.push(Line::raw(""));
    o.push(Line::styled(
        format!("artifacts ({})", i.artifacts.len()),
        Style::default().add_modifier(Modifier::BOLD),
    ));
    for a in &i.artifacts {
        o.push(Line::raw(format!(
            "  {} ({} bytes)",
            shown_line(&a.name),
            a.size
        )));
        let lines: Vec<&str> = a.text.lines().collect();
        for l in lines.iter().take(ARTIFACT_LINES) {
            o.push(Line::styled(
                format!("    {}", shown_line(&l.replace('\t', "    "))),
                dim(),
            ));
        }
        if lines.len() > ARTIFACT_LINES || a.cut {
            o.push(Line::styled(
                format!("    … (git hyperion inspect {} shows all)", i.id),
                dim(),
            ));
        }
    }
    if !i.findings.is_empty() {
        o.push(Line::raw(""));
        o.push(Line::styled("findings", error_style()));
        for f in &i.findings {
            o.push(Line::raw(format!(
                "  [{}] {}",
                f.code,
                shown_line(&f.message)
            )));
        }
    }
    o
}

fn status_bar(frame: &mut Frame, area: Rect, state: &State) {
    let sep = Span::styled(" │ ", dim());
    let mut spans = vec![Span::styled(
        format!(" refresh {} ", crate::duration::format(state.refresh)),
        Style::default().add_modifier(Modifier::REVERSED),
    )];
    spans.push(sep.clone());
    let status = state.status_filter.map_or("all", Status::as_str);
    let agent = state
        .agent_filter
        .as_deref()
        .map_or_else(|| "all".to_owned(), shown_line);
    spans.push(Span::raw(format!("status:{status} agent:{agent}")));
    if state.editing {
        spans.push(Span::styled(
            format!(" /{}▏", shown_line(&state.text_filter)),
            Style::default().fg(Color::Cyan),
        ));
        spans.push(Span::styled("  Enter keep · Esc clear", dim()));
    } else {
        if !state.text_filter.is_empty() {
            spans.push(Span::raw(format!(" /{}", shown_line(&state.text_filter))));
        }
        spans.push(sep.clone());
        match (&state.poll_error, state.polled_at) {
            (Some(e), _) => spans.push(Span::styled(
                format!("poll failed: {}", shown_line(e)),
                error_style(),
            )),
            (None, Some(t)) => spans.push(Span::raw(format!("polled {}", hms(t)))),
            (None, None) => spans.push(Span::raw("reading the queue…")),
        }
        match &state.fetched {
            Some((remote, Ok(t))) => {
                spans.push(sep.clone());
                spans.push(Span::raw(format!("{} {}", shown_line(remote), hms(*t))));
            }
            Some((remote, Err(e))) => {
                spans.push(sep.clone());
                spans.push(Span::styled(
                    format!("{}: {}", shown_line(remote), shown_line(e)),
                    error_style(),
                ));
            }
            None => {}
        }
        spans.push(sep);
        spans.push(Span::styled("? keys  q quit", dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn help(frame: &mut Frame, area: Rect) {
    let w = area.width.min(78);
    let h = area.height.min(KEYS.len() as u16 + 2);
    let popup = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    let rows = KEYS.iter().map(|(k, what)| {
        Row::new([
            Cell::from(*k).style(Style::default().fg(Color::Cyan)),
            Cell::from(*what),
        ])
    });
    let table = Table::new(rows, [Constraint::Length(14), Constraint::Min(0)]).block(
        Block::default()
            .borders(Borders::ALL)
            .title(" keys (any key closes) "),
    );
    frame.render_widget(Clear, popup);
    frame.render_widget(table, popup);
}
