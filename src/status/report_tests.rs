use super::*;
use crate::status::report_model::{
    ReportMark, ReportPause, ReportSpan, ReportTurn, ReportWave, RunReport,
};

const T0: i64 = 1_764_670_000_000;

fn turn(turn: u32, attempt: u32, kind: &str, outcome: &str, start: i64, end: i64) -> ReportTurn {
    ReportTurn {
        turn,
        attempt,
        kind: kind.into(),
        outcome: outcome.into(),
        started_at_ms: T0 + start,
        finished_at_ms: T0 + end,
        input_tokens: 1000,
        output_tokens: 200,
    }
}

fn small_report() -> RunReport {
    RunReport {
        session: "run-20261202-101010-abcd".into(),
        status: "succeeded".into(),
        backend: "demo".into(),
        prompt: "Ship the MVP & keep it <small>".into(),
        started_at_ms: T0,
        finished_at_ms: Some(T0 + 10_000),
        events: 120,
        waves: vec![
            ReportWave {
                wave: 1,
                kind: "core".into(),
                agents: vec!["planner".into(), "builder".into()],
                scheduled_at_ms: T0 + 10,
            },
            ReportWave {
                wave: 2,
                kind: "dynamic".into(),
                agents: vec!["api-impl".into()],
                scheduled_at_ms: T0 + 5000,
            },
        ],
        agents: vec![
            ReportAgent {
                id: "planner".into(),
                role: "planner".into(),
                kind: "core".into(),
                wave: 1,
                status: "succeeded".into(),
                backend: "demo".into(),
                model: "demo-1".into(),
                input_tokens: 2000,
                output_tokens: 400,
                turns: vec![
                    turn(1, 1, "plan", "completed", 20, 1500),
                    turn(2, 1, "follow-up", "completed", 1600, 3000),
                ],
                final_answer: Some(Clipped::of("The plan: <script>alert(1)</script>", 8192)),
                ..ReportAgent::default()
            },
            ReportAgent {
                id: "builder".into(),
                role: "builder <b>lead</b>".into(),
                kind: "core".into(),
                wave: 1,
                status: "succeeded".into(),
                depends_on: vec!["planner".into()],
                backend: "demo".into(),
                input_tokens: 3000,
                output_tokens: 600,
                turns: vec![
                    turn(1, 1, "plan", "failed", 3100, 3300),
                    turn(1, 2, "plan", "completed", 3500, 4800),
                ],
                parks: vec![ReportSpan {
                    start_ms: T0 + 3300,
                    end_ms: T0 + 3500,
                }],
                merges: vec![ReportMark {
                    at_ms: T0 + 4900,
                    kind: "agent_merged".into(),
                    label: "into orch/run <main>".into(),
                }],
                final_answer: Some(Clipped::of(&"x".repeat(300), 100)),
                patch: Some(Clipped::of("+<script>evil()</script>\n", 204_800)),
                ..ReportAgent::default()
            },
            ReportAgent {
                id: "api-impl".into(),
                role: "implementer".into(),
                kind: "dynamic".into(),
                wave: 2,
                status: "blocked".into(),
                status_detail: "builder".into(),
                depends_on: vec!["builder".into(), "planner".into()],
                ..ReportAgent::default()
            },
        ],
        pauses: vec![ReportPause {
            number: 1,
            paused_at_ms: T0 + 3000,
            resumed_at_ms: Some(T0 + 3100),
            requested_by: "ctl".into(),
            finished: vec!["planner".into()],
            pending: vec!["builder".into()],
            next_steps: vec!["run `launch resume` <now>".into()],
            ..ReportPause::default()
        }],
        tiers: Vec::new(),
        features: Vec::new(),
    }
}

#[test]
fn escape_covers_markup_and_quotes() {
    assert_eq!(
        escape(r#"<a href="x">'&'</a>"#),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
    );
}

#[test]
fn nothing_an_agent_wrote_reaches_the_page_as_markup() {
    let html = render_html(&small_report());
    assert!(!html.contains("<script"), "a script tag got through");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("+&lt;script&gt;evil()&lt;/script&gt;"));
    assert!(html.contains("builder &lt;b&gt;lead&lt;/b&gt;"));
    assert!(html.contains("Ship the MVP &amp; keep it &lt;small&gt;"));
    assert!(html.contains("into orch/run &lt;main&gt;"));
    assert!(html.contains("run `launch resume` &lt;now&gt;"));
}

#[test]
fn the_page_loads_nothing_from_anywhere_and_runs_no_script() {
    let html = render_html(&small_report());
    for needle in [
        "<script", "src=", "<link", "@import", "url(http", "https://",
    ] {
        assert!(!html.contains(needle), "found `{needle}`");
    }
}

#[test]
fn every_agent_its_retries_parks_waves_pauses_and_merges_are_drawn() {
    let html = render_html(&small_report());
    for id in ["planner", "builder", "api-impl"] {
        assert!(html.contains(&format!("id=\"agent-{id}\"")), "{id}");
        assert!(html.contains(&format!("id=\"row-{id}\"")), "{id}");
    }
    assert!(html.contains("class=\"bar-retry\""));
    assert!(html.contains("class=\"bar-failed\""));
    assert!(html.contains("fill=\"url(#hatch)\""));
    assert!(html.contains("wave 2 dynamic"));
    assert!(html.contains("class=\"paused\""));
    assert!(html.contains("class=\"merge\""));
    assert!(html.contains("also after planner"));
    assert!(html.contains("Truncated: the first 100 bytes of 300 bytes"));
    assert!(html.contains("No completed turn, so no final answer."));
}

#[test]
fn a_run_without_merges_or_pauses_says_so() {
    let mut report = small_report();
    report.pauses.clear();
    for a in &mut report.agents {
        a.merges.clear();
    }
    let html = render_html(&report);
    assert!(html.contains("The run was never paused."));
    assert!(html.contains("recorded no commits or merges"));
}

#[test]
fn a_small_report_renders_as_before() {
    insta::assert_snapshot!(render_html(&small_report()));
}

#[test]
fn spans_read_naturally() {
    assert_eq!(span_label(850), "850 ms");
    assert_eq!(span_label(12_345), "12.3 s");
    assert_eq!(span_label(245_000), "4 m 05 s");
    assert_eq!(span_label(7_380_000), "2 h 03 m");
}
