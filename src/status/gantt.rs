//! The report's Gantt chart: one row per agent, one bar per turn over the run's time,
//! as inline SVG. Waves and pauses are vertical lines, parks hatched spans, merges
//! diamonds. Turns closer than a pixel share a bar, so the chart's size depends on
//! the number of agents, not of turns.

use std::fmt::Write as _;

use crate::status::report::{escape, span_label};
use crate::status::report_model::{ReportAgent, ReportTurn, RunReport};

const LABEL_W: f64 = 190.0;
const CHART_W: f64 = 1000.0;
const ROW_H: f64 = 24.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 26.0;

/// The time span the chart covers: the run's start to its last known moment.
fn time_range(report: &RunReport) -> (i64, i64) {
    let mut start = report.started_at_ms;
    let mut end = report.finished_at_ms.unwrap_or(start);
    let mut widen = |ms: i64| {
        if ms > 0 {
            start = start.min(ms);
            end = end.max(ms);
        }
    };
    for agent in &report.agents {
        for t in &agent.turns {
            widen(t.started_at_ms);
            widen(t.finished_at_ms);
        }
        for p in &agent.parks {
            widen(p.end_ms);
        }
        for m in &agent.merges {
            widen(m.at_ms);
        }
    }
    for w in &report.waves {
        widen(w.scheduled_at_ms);
    }
    for p in &report.pauses {
        widen(p.paused_at_ms);
        if let Some(r) = p.resumed_at_ms {
            widen(r);
        }
    }
    (start, end.max(start + 1))
}

/// Turns merged into one drawn bar.
struct Bar {
    x0: f64,
    x1: f64,
    first: usize,
    count: usize,
    class: &'static str,
}

fn class_of(t: &ReportTurn) -> &'static str {
    match (t.is_success(), t.is_retry()) {
        (false, _) => "bar-failed",
        (true, true) => "bar-retry",
        (true, false) if t.kind == "plan" => "bar-plan",
        _ => "bar-follow",
    }
}

/// Failed shows over retry, retry over success, when turns share a bar.
fn rank(class: &str) -> u8 {
    match class {
        "bar-failed" => 3,
        "bar-retry" => 2,
        _ => 1,
    }
}

fn bars(agent: &ReportAgent, x: &impl Fn(i64) -> f64) -> Vec<Bar> {
    let mut order: Vec<usize> = (0..agent.turns.len()).collect();
    order.sort_by_key(|&i| agent.turns[i].started_at_ms);
    let mut out: Vec<Bar> = Vec::new();
    for i in order {
        let t = &agent.turns[i];
        let x0 = x(t.started_at_ms);
        let x1 = x(t.finished_at_ms.max(t.started_at_ms)).max(x0 + 1.0);
        let class = class_of(t);
        if let Some(bar) = out.last_mut()
            && x0 < bar.x1 + 1.0
            && (x1 - x0 < 2.0 || bar.x1 - bar.x0 < 2.0)
        {
            bar.x1 = bar.x1.max(x1);
            bar.count += 1;
            if rank(class) > rank(bar.class) {
                bar.class = class;
            }
            continue;
        }
        out.push(Bar {
            x0,
            x1,
            first: i,
            count: 1,
            class,
        });
    }
    out
}

fn turn_title(t: &ReportTurn) -> String {
    let retry = if t.is_retry() {
        format!(", attempt {}", t.attempt)
    } else {
        String::new()
    };
    format!(
        "turn {} {}{retry}: {} in {}, {} in / {} out tokens",
        t.turn,
        t.kind,
        t.outcome,
        span_label(t.finished_at_ms - t.started_at_ms),
        t.input_tokens,
        t.output_tokens
    )
}

/// The chart as one `<svg>` element.
pub fn render_svg(report: &RunReport) -> String {
    let (start, end) = time_range(report);
    let scale = CHART_W / (end - start) as f64;
    let x = |ms: i64| LABEL_W + ((ms.max(start) - start) as f64 * scale).min(CHART_W);
    let rows = report.agents.len().max(1) as f64;
    let height = TOP + rows * ROW_H + BOTTOM;
    let width = LABEL_W + CHART_W + 10.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" aria-label="agents and their turns over time">"#
    );
    svg.push_str(
        r##"<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fdf2d0"/><line x1="0" y1="0" x2="0" y2="6" stroke="#c9a227" stroke-width="3"/></pattern></defs>"##,
    );
    // Time axis: five ticks, relative to the run's start.
    let axis_y = TOP + rows * ROW_H;
    for i in 0..=5 {
        let ms = start + (end - start) * i / 5;
        let tx = x(ms);
        let _ = write!(
            svg,
            r##"<line x1="{tx:.1}" y1="{TOP:.0}" x2="{tx:.1}" y2="{axis_y:.0}" stroke="#e3e3e3"/><text x="{tx:.1}" y="{:.0}" class="tick" text-anchor="{}">+{}</text>"##,
            axis_y + 16.0,
            if i == 5 { "end" } else { "middle" },
            span_label(ms - start)
        );
    }
    // Paused spans behind the bars.
    for p in &report.pauses {
        let x0 = x(p.paused_at_ms);
        let x1 = x(p.resumed_at_ms.unwrap_or(end)).max(x0 + 2.0);
        let anchor = if x0 > LABEL_W + CHART_W - 60.0 {
            "end"
        } else {
            "start"
        };
        let _ = write!(
            svg,
            r##"<rect class="paused" x="{x0:.1}" y="{TOP:.0}" width="{:.1}" height="{:.0}"><title>pause {} ({})</title></rect><text x="{x0:.1}" y="{:.0}" text-anchor="{anchor}" class="mark-label pause-label">pause {}</text>"##,
            x1 - x0,
            rows * ROW_H,
            p.number,
            escape(&p.requested_by),
            TOP - 4.0,
            p.number
        );
    }
    for (i, agent) in report.agents.iter().enumerate() {
        let y = TOP + i as f64 * ROW_H;
        if i % 2 == 1 {
            let _ = write!(
                svg,
                r##"<rect x="0" y="{y:.0}" width="{width:.0}" height="{ROW_H:.0}" fill="#f7f7f9"/>"##
            );
        }
        let _ = write!(
            svg,
            r#"<text x="6" y="{:.0}" class="row-label">{} <tspan class="row-status">{}</tspan></text>"#,
            y + 16.0,
            escape(&agent.id),
            escape(&agent.status)
        );
        for p in &agent.parks {
            let x0 = x(p.start_ms);
            let x1 = x(p.end_ms).max(x0 + 2.0);
            let _ = write!(
                svg,
                r#"<rect x="{x0:.1}" y="{:.0}" width="{:.1}" height="{:.0}" fill="url(#hatch)"><title>parked until the usage limit resets ({})</title></rect>"#,
                y + 5.0,
                x1 - x0,
                ROW_H - 10.0,
                span_label(p.end_ms - p.start_ms)
            );
        }
        for bar in bars(agent, &x) {
            let title = if bar.count == 1 {
                turn_title(&agent.turns[bar.first])
            } else {
                format!("{} turns", bar.count)
            };
            let _ = write!(
                svg,
                r#"<rect class="{}" x="{:.1}" y="{:.0}" width="{:.1}" height="{:.0}" rx="2"><title>{}</title></rect>"#,
                bar.class,
                bar.x0,
                y + 4.0,
                bar.x1 - bar.x0,
                ROW_H - 8.0,
                escape(&title)
            );
            if bar.class == "bar-retry" && bar.x1 - bar.x0 > 14.0 {
                let _ = write!(
                    svg,
                    r#"<text x="{:.1}" y="{:.0}" class="bar-text">↻</text>"#,
                    bar.x0 + 3.0,
                    y + 16.0
                );
            }
        }
        for m in &agent.merges {
            let mx = x(m.at_ms);
            let my = y + ROW_H / 2.0;
            let _ = write!(
                svg,
                r#"<path class="merge" d="M{mx:.1} {:.1} l5 7 l-5 7 l-5 -7 z"><title>{}: {}</title></path>"#,
                my - 7.0,
                escape(&m.kind),
                escape(&m.label)
            );
        }
    }
    // Waves over everything, so they stay visible.
    for w in &report.waves {
        let wx = x(w.scheduled_at_ms);
        // Near the right edge the label reads leftwards, so it is not cut off.
        let (lx, anchor) = if wx > LABEL_W + CHART_W - 120.0 {
            (wx - 2.0, "end")
        } else {
            (wx + 2.0, "start")
        };
        let _ = write!(
            svg,
            r#"<line class="wave" x1="{wx:.1}" y1="{:.0}" x2="{wx:.1}" y2="{axis_y:.0}"/><text x="{lx:.1}" y="{:.0}" text-anchor="{anchor}" class="mark-label wave-label">wave {} {}</text>"#,
            TOP - 16.0,
            TOP - 18.0,
            w.wave,
            escape(&w.kind)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(start: i64, end: i64, attempt: u32, outcome: &str) -> ReportTurn {
        ReportTurn {
            turn: 1,
            attempt,
            kind: "plan".into(),
            outcome: outcome.into(),
            started_at_ms: start,
            finished_at_ms: end,
            input_tokens: 1,
            output_tokens: 1,
        }
    }

    #[test]
    fn thousands_of_turns_draw_at_most_one_bar_per_pixel() {
        let agent = ReportAgent {
            id: "busy".into(),
            turns: (0..100_000)
                .map(|i| turn(i, i + 1, 1, "completed"))
                .collect(),
            ..ReportAgent::default()
        };
        let report = RunReport {
            started_at_ms: 0,
            finished_at_ms: Some(100_001),
            agents: vec![agent],
            ..RunReport::default()
        };
        let svg = render_svg(&report);
        let drawn = svg.matches("class=\"bar-").count();
        assert!(drawn <= CHART_W as usize, "{drawn} bars");
        assert!(svg.len() < 200_000, "{} bytes", svg.len());
    }

    #[test]
    fn a_failed_turn_keeps_its_colour_inside_a_merged_bar_and_retries_show() {
        let agent = ReportAgent {
            id: "a".into(),
            turns: vec![
                turn(0, 10, 1, "failed"),
                turn(10, 11, 1, "completed"),
                turn(500, 900, 2, "completed"),
            ],
            ..ReportAgent::default()
        };
        let report = RunReport {
            started_at_ms: 0,
            finished_at_ms: Some(1000),
            agents: vec![agent],
            ..RunReport::default()
        };
        let svg = render_svg(&report);
        assert!(svg.contains("bar-failed"));
        assert!(svg.contains("bar-retry"));
        assert!(svg.contains("attempt 2"));
    }
}
