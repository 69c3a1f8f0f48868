//! Draws a [`Board`]: a header line for the run, one row per agent (indented under what
//! it depends on), and a line of keys. Columns drop out, least useful first, as the
//! pane narrows.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Widget};

use crate::board::model::{Board, BoardAgent, Tone};
use crate::events::render::{count, duration};

/// The columns, in order, with the narrowest board that still shows each.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Column {
    Agent,
    State,
    Wave,
    Backend,
    Time,
    Tokens,
    Files,
    Branch,
    Doing,
}

impl Column {
    fn shown_from(self) -> u16 {
        match self {
            Column::Agent | Column::State => 0,
            Column::Time => 50,
            Column::Doing => 60,
            Column::Tokens => 78,
            Column::Wave => 90,
            Column::Backend => 110,
            Column::Files => 120,
            Column::Branch => 140,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Column::Agent => "AGENT",
            Column::State => "STATE",
            Column::Wave => "WAVE",
            Column::Backend => "BACKEND",
            Column::Time => "TIME",
            Column::Tokens => "TOKENS IN/OUT",
            Column::Files => "FILES",
            Column::Branch => "BRANCH",
            Column::Doing => "NOW",
        }
    }

    fn width(self) -> Constraint {
        match self {
            Column::Agent => Constraint::Length(22),
            Column::State => Constraint::Length(28),
            Column::Wave => Constraint::Length(4),
            Column::Backend => Constraint::Length(16),
            Column::Time => Constraint::Length(7),
            Column::Tokens => Constraint::Length(13),
            Column::Files => Constraint::Length(5),
            Column::Branch => Constraint::Length(24),
            Column::Doing => Constraint::Min(10),
        }
    }
}

const COLUMNS: [Column; 9] = [
    Column::Agent,
    Column::State,
    Column::Wave,
    Column::Backend,
    Column::Time,
    Column::Tokens,
    Column::Files,
    Column::Branch,
    Column::Doing,
];

/// Draws `board` as it stands at `now_ms` into `area`; `keys` is the bottom line.
pub fn render(board: &Board, now_ms: u64, keys: &str, area: Rect, buf: &mut Buffer) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    let header = Rect { height: 1, ..area };
    Paragraph::new(header_line(board, now_ms)).render(header, buf);
    let footer_height = u16::from(area.height > 2 && !keys.is_empty());
    let table = Rect {
        y: area.y + 1,
        height: area.height.saturating_sub(1 + footer_height),
        ..area
    };
    let columns: Vec<Column> = COLUMNS
        .into_iter()
        .filter(|c| area.width >= c.shown_from())
        .collect();
    let titles = Row::new(columns.iter().map(|c| Cell::from(c.title())))
        .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = board.agents.iter().map(|agent| {
        Row::new(
            columns
                .iter()
                .map(|column| cell(board, agent, *column, now_ms)),
        )
    });
    Table::new(rows, columns.iter().map(|c| c.width()))
        .header(titles)
        .column_spacing(1)
        .render(table, buf);
    if footer_height == 1 {
        let footer = Rect {
            y: area.y + area.height - 1,
            height: 1,
            ..area
        };
        Paragraph::new(Line::from(Span::styled(
            keys.to_owned(),
            Style::default().fg(Color::DarkGray),
        )))
        .render(footer, buf);
    }
}

fn header_line(board: &Board, now_ms: u64) -> Line<'static> {
    let end = board.finished_ms.unwrap_or(now_ms);
    let mut parts = vec![
        Span::styled(
            board.session.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(" · "),
        Span::styled(board.state.clone(), run_style(&board.state)),
    ];
    let mut text = Vec::new();
    if board.started_ms > 0 {
        text.push(duration(end.saturating_sub(board.started_ms)));
    }
    text.push(format!("wave {}", board.wave));
    let done = board.agents.iter().filter(|a| a.tone == Tone::Good).count();
    text.push(format!("{done}/{} agents done", board.agents.len()));
    let tokens = board.tokens_in + board.tokens_out;
    text.push(match board.max_tokens {
        Some(max) => format!(
            "{} of {} tokens ({}%)",
            count(tokens),
            count(max),
            tokens * 100 / max.max(1)
        ),
        None => format!(
            "{} in / {} out tokens",
            count(board.tokens_in),
            count(board.tokens_out)
        ),
    });
    if board.cost_micros > 0 {
        text.push(crate::config::prices::dollars(board.cost_micros));
    }
    if !board.backend.is_empty() {
        text.push(board.backend.clone());
    }
    if !board.live && board.finished_ms.is_none() {
        text.push("from the audit store".into());
    }
    for item in text {
        parts.push(Span::raw(" · "));
        parts.push(Span::raw(item));
    }
    Line::from(parts)
}

fn cell(board: &Board, agent: &BoardAgent, column: Column, now_ms: u64) -> Cell<'static> {
    match column {
        Column::Agent => {
            let depth = board.depth(agent);
            let name = if depth == 0 {
                agent.id.clone()
            } else {
                format!("{}└ {}", " ".repeat((depth - 1).min(6) * 2), agent.id)
            };
            Cell::from(name)
        }
        Column::State => Cell::from(Span::styled(agent.state.clone(), tone_style(agent.tone))),
        Column::Wave => Cell::from(agent.wave.to_string()),
        Column::Backend => Cell::from(match &agent.model {
            Some(model) => format!("{}/{model}", agent.backend),
            None => agent.backend.clone(),
        }),
        Column::Time => Cell::from(match agent.started_ms {
            Some(start) => duration(agent.finished_ms.unwrap_or(now_ms).saturating_sub(start)),
            None => "-".into(),
        }),
        Column::Tokens => Cell::from(if agent.tokens_in + agent.tokens_out == 0 {
            "-".to_owned()
        } else {
            format!("{}/{}", count(agent.tokens_in), count(agent.tokens_out))
        }),
        Column::Files => Cell::from(if agent.files_changed == 0 {
            "-".to_owned()
        } else {
            agent.files_changed.to_string()
        }),
        // The header names the run: its session is left out of the agents' branches.
        Column::Branch => Cell::from(match &agent.branch {
            Some(branch) => branch.replacen(&format!("/{}/", board.session), "/…/", 1),
            None => "-".into(),
        }),
        Column::Doing => Cell::from(agent.doing.clone()),
    }
}

fn tone_style(tone: Tone) -> Style {
    let style = Style::default();
    match tone {
        Tone::Waiting => style.fg(Color::DarkGray),
        Tone::Busy => style.fg(Color::Cyan),
        Tone::Held => style.fg(Color::Yellow),
        Tone::Good => style.fg(Color::Green),
        Tone::Bad => style.fg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

fn run_style(state: &str) -> Style {
    tone_style(match state {
        "succeeded" => Tone::Good,
        "failed" | "crashed" => Tone::Bad,
        "paused" | "pausing" | "stopping" | "stopped" => Tone::Held,
        _ => Tone::Busy,
    })
}

/// The board as plain text lines `width` columns wide (trailing blanks cut): what
/// `launch status` prints without `--watch`.
pub fn to_text(board: &Board, now_ms: u64, width: u16) -> String {
    let height = u16::try_from(board.agents.len() + 2).unwrap_or(u16::MAX);
    let area = Rect::new(0, 0, width.max(20), height);
    let mut buf = Buffer::empty(area);
    render(board, now_ms, "", area, &mut buf);
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        for x in 0..area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::model::tests::mid_run;

    const NOW: u64 = 1_796_000_000_000 + 8_000;

    #[test]
    fn the_board_at_three_widths() {
        let board = mid_run();
        insta::assert_snapshot!("board_wide", to_text(&board, NOW, 170));
        insta::assert_snapshot!("board_medium", to_text(&board, NOW, 90));
        insta::assert_snapshot!("board_narrow", to_text(&board, NOW, 44));
    }

    #[test]
    fn the_keys_line_is_drawn_at_the_bottom_when_there_is_room() {
        let board = mid_run();
        let area = Rect::new(0, 0, 100, 12);
        let mut buf = Buffer::empty(area);
        render(&board, NOW, "p pause · q quit", area, &mut buf);
        let last: String = (0..area.width)
            .map(|x| buf[(x, 11)].symbol().to_owned())
            .collect();
        assert_eq!(last.trim_end(), "p pause · q quit");
        // Too small for anything: nothing panics.
        for (w, h) in [(0, 0), (1, 1), (5, 2), (100, 1)] {
            let area = Rect::new(0, 0, w, h);
            render(&board, NOW, "keys", area, &mut Buffer::empty(area));
        }
    }
}
