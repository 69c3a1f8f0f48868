//! `orch-audit report`: one self-contained, printable HTML page about a run, rendered
//! from a `RunReport` (no store access here). No scripts, no network resources: CSS
//! and the Gantt chart's SVG are inline. Everything an agent or a user wrote (roles,
//! prompts, answers, patches, labels) is HTML-escaped.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use crate::audit::render::time_of;
use crate::status::gantt::render_svg;
use crate::status::report_model::{Clipped, ReportAgent, RunReport};

/// The report's stylesheet (screen and print).
const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;margin:24px auto;max-width:1240px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.meta{color:#555}.meta b{color:#1d1d1f}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f4f4f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7f7f9;border:1px solid #e3e3e3;padding:8px;white-space:pre-wrap;word-break:break-word;font-size:12px;max-height:none}
.status-succeeded{color:#1a7f37}.status-failed,.status-crashed{color:#c62828}
.status-blocked,.status-stopped,.status-paused{color:#9a6700}.status-running{color:#0b5cad}
.note{color:#666;font-style:italic}
.gantt-wrap{overflow-x:auto}
svg.gantt text{font:11px system-ui,sans-serif;fill:#333}
svg.gantt .row-label{font-weight:600}svg.gantt .row-status{font-weight:400;fill:#777}
svg.gantt .tick{fill:#777}svg.gantt .mark-label{font-size:10px}
.bar-plan{fill:#3b7dd8}.bar-follow{fill:#7aa8e8}.bar-retry{fill:#e08a1e}.bar-failed{fill:#d64545}
.bar-text{fill:#fff!important;font-size:11px}
.paused{fill:#c62828;fill-opacity:.10}.pause-label{fill:#c62828!important}
.wave{stroke:#6a3fb5;stroke-width:1.5;stroke-dasharray:4 3}.wave-label{fill:#6a3fb5!important}
.merge{fill:#1a7f37;stroke:#fff;stroke-width:1}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle}
ul.deps{list-style:none;padding-left:18px;margin:2px 0}ul.deps li{margin:2px 0}
ul.deps li::before{content:"└ ";color:#999}
.agent{break-inside:avoid-page}
@media print{body{margin:0;max-width:none}.gantt-wrap{overflow:visible}svg.gantt{max-width:100%;height:auto}details{display:block}}
"#;

/// The longest prompt shown in the header.
const PROMPT_SHOWN: usize = 4096;

/// Escapes text for HTML element content and double- or single-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `850 ms`, `12.3 s`, `4 m 05 s`, `2 h 03 m` for a number of milliseconds.
pub fn span_label(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} m {:02} s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{} h {:02} m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

fn bytes_label(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// The whole page.
pub fn render_html(report: &RunReport) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let title = format!("orch run {}", report.session);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{CSS}</style></head><body>\n",
        escape(&title)
    );
    header(&mut h, report);
    gantt(&mut h, report);
    agents_table(&mut h, report);
    tiers_table(&mut h, report);
    features_table(&mut h, report);
    dependencies(&mut h, report);
    interrupts(&mut h, report);
    details(&mut h, report);
    h.push_str("<p class=\"note\">Written by <code>orch-audit report</code> from the audit store; events are summarised, <code>orch-audit events</code> lists them all.</p>\n</body></html>\n");
    h
}

fn header(h: &mut String, r: &RunReport) {
    let (input, cached, output) = r.agents.iter().fold((0, 0, 0), |(i, c, o), a| {
        (
            i + a.input_tokens,
            c + a.cached_input_tokens,
            o + a.output_tokens,
        )
    });
    let elapsed = match r.finished_at_ms {
        Some(end) => span_label(end - r.started_at_ms),
        None => "not finished".into(),
    };
    let _ = write!(
        h,
        "<h1>Run {}</h1>\n<p class=\"meta\">status <b class=\"status-{}\">{}</b> · backend <b>{}</b> · started <b>{}</b> · elapsed <b>{}</b> · {} agents · {} waves · {} events · tokens <b>{}</b> in ({} cached) / <b>{}</b> out{}</p>\n",
        escape(&r.session),
        escape(&r.status),
        escape(&r.status),
        escape(&r.backend),
        time_of(r.started_at_ms),
        elapsed,
        r.agents.len(),
        r.waves.len(),
        r.events,
        input,
        cached,
        output,
        total_cost(r).map_or(String::new(), |c| format!(" · cost <b>${c:.4}</b>")),
    );
    let prompt = Clipped::of(&r.prompt, PROMPT_SHOWN);
    let _ = writeln!(
        h,
        "<h3>Prompt</h3><pre class=\"prompt\">{}</pre>{}",
        escape(&prompt.text),
        clip_note(&prompt, "`orch-audit runs --json` prints it whole")
    );
}

fn total_cost(r: &RunReport) -> Option<f64> {
    r.agents
        .iter()
        .filter_map(|a| a.cost_usd)
        .fold(None, |sum, c| Some(sum.unwrap_or(0.0) + c))
}

fn clip_note(c: &Clipped, how: &str) -> String {
    if c.is_truncated() {
        format!(
            "<p class=\"note\">Truncated: the first {} of {} are shown; {}.</p>",
            bytes_label(c.text.len() as u64),
            bytes_label(c.total_bytes),
            escape(how)
        )
    } else {
        String::new()
    }
}

fn gantt(h: &mut String, r: &RunReport) {
    h.push_str("<h2>Timeline</h2>\n<div class=\"legend\"><span><i class=\"bar-plan\" style=\"background:#3b7dd8\"></i>plan turn</span><span><i style=\"background:#7aa8e8\"></i>follow-up turn</span><span><i style=\"background:#e08a1e\"></i>retry (attempt &gt; 1)</span><span><i style=\"background:#d64545\"></i>failed or interrupted</span><span><i style=\"background:repeating-linear-gradient(45deg,#c9a227 0 3px,#fdf2d0 3px 6px)\"></i>parked (usage limit)</span><span><i style=\"background:rgba(198,40,40,.15)\"></i>paused</span><span><i style=\"border-left:2px dashed #6a3fb5;width:2px\"></i>wave scheduled</span><span><i style=\"background:#1a7f37;width:10px;transform:rotate(45deg) scale(.7)\"></i>changes committed or merged</span></div>\n<div class=\"gantt-wrap\">");
    h.push_str(&render_svg(r));
    h.push_str("</div>\n");
    if r.agents.iter().all(|a| a.merges.is_empty()) {
        h.push_str(
            "<p class=\"note\">This run recorded no commits or merges of agents' changes.</p>\n",
        );
    }
}

fn agents_table(h: &mut String, r: &RunReport) {
    let costs = r.agents.iter().any(|a| a.cost_usd.is_some());
    let _ = write!(
        h,
        "<h2>Agents</h2>\n<table class=\"agents\"><thead><tr><th>agent</th><th>role</th><th>kind</th><th>wave</th><th>status</th><th>backend</th><th class=\"num\">turns</th><th class=\"num\">retries</th><th class=\"num\">time</th><th class=\"num\">input tokens</th><th class=\"num\">cached</th><th class=\"num\">output tokens</th>{}</tr></thead><tbody>\n",
        if costs {
            "<th class=\"num\">cost</th>"
        } else {
            ""
        }
    );
    for a in &r.agents {
        let busy: i64 = a
            .turns
            .iter()
            .map(|t| (t.finished_at_ms - t.started_at_ms).max(0))
            .sum();
        let retries = a.turns.iter().filter(|t| t.is_retry()).count();
        let status = if a.status_detail.is_empty() {
            escape(&a.status)
        } else {
            format!("{} ({})", escape(&a.status), escape(&a.status_detail))
        };
        let backend = if a.model.is_empty() {
            escape(&a.backend)
        } else {
            format!("{} / {}", escape(&a.backend), escape(&a.model))
        };
        let _ = writeln!(
            h,
            "<tr id=\"row-{id}\"><td><a href=\"#agent-{id}\">{id}</a></td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"status-{}\">{status}</td><td>{backend}</td><td class=\"num\">{}</td><td class=\"num\">{retries}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>{}</tr>",
            escape(&a.role),
            escape(&a.kind),
            a.wave,
            escape(&a.status),
            a.turns.len(),
            span_label(busy),
            a.input_tokens,
            a.cached_input_tokens,
            a.output_tokens,
            match (costs, a.cost_usd) {
                (true, Some(c)) => format!("<td class=\"num\">${c:.4}</td>"),
                (true, None) => "<td class=\"num\">–</td>".into(),
                _ => String::new(),
            },
            id = escape(&a.id),
        );
    }
    h.push_str("</tbody></table>\n");
}

/// Turns, tokens and cost per model tier, when the run used tiers.
fn tiers_table(h: &mut String, r: &RunReport) {
    if r.tiers.is_empty() {
        return;
    }
    h.push_str("<h2>Model tiers</h2>\n<table class=\"agents\"><thead><tr><th>tier</th><th class=\"num\">turns</th><th class=\"num\">input tokens</th><th class=\"num\">output tokens</th><th class=\"num\">cost</th></tr></thead><tbody>\n");
    for t in &r.tiers {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&t.tier),
            t.turns,
            t.input_tokens,
            t.output_tokens,
            t.cost_usd
                .map_or_else(|| "–".to_owned(), |c| format!("${c:.4}")),
        );
    }
    h.push_str("</tbody></table>\n");
}

/// Each feature of `--features` with its track, status and attempts.
fn features_table(h: &mut String, r: &RunReport) {
    if r.features.is_empty() {
        return;
    }
    h.push_str("<h2>Features</h2>\n<table class=\"agents\"><thead><tr><th>feature</th><th>agent</th><th>track</th><th>status</th><th class=\"num\">attempts</th><th>why it failed</th></tr></thead><tbody>\n");
    for f in &r.features {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><a href=\"#agent-{agent}\">{agent}</a></td><td>{}</td><td class=\"status-{status}\">{status}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&f.feature),
            escape(&f.track),
            f.attempts,
            escape(f.reason.as_deref().unwrap_or("")),
            agent = escape(&f.agent),
            status = escape(&f.status),
        );
    }
    h.push_str("</tbody></table>\n");
}

fn dependencies(h: &mut String, r: &RunReport) {
    h.push_str("<h2>Dependencies</h2>\n");
    if !r.waves.is_empty() {
        h.push_str("<table class=\"waves\"><thead><tr><th>wave</th><th>kind</th><th>scheduled</th><th>agents</th></tr></thead><tbody>\n");
        for w in &r.waves {
            let _ = writeln!(
                h,
                "<tr><td class=\"num\">{}</td><td>{}</td><td>+{}</td><td>{}</td></tr>",
                w.wave,
                escape(&w.kind),
                span_label(w.scheduled_at_ms - r.started_at_ms),
                escape(&w.agents.join(", "))
            );
        }
        h.push_str("</tbody></table>\n");
    }
    let known: HashSet<&str> = r.agents.iter().map(|a| a.id.as_str()).collect();
    let mut children: BTreeMap<&str, Vec<&ReportAgent>> = BTreeMap::new();
    let mut roots = Vec::new();
    for a in &r.agents {
        match a.depends_on.iter().find(|d| known.contains(d.as_str())) {
            Some(parent) if parent != &a.id => children.entry(parent.as_str()).or_default().push(a),
            _ => roots.push(a),
        }
    }
    let mut seen = HashSet::new();
    h.push_str("<ul class=\"deps tree\">\n");
    for a in &roots {
        tree_node(h, a, &children, &mut seen);
    }
    // Agents only reachable through a cycle.
    for a in &r.agents {
        if !seen.contains(a.id.as_str()) {
            tree_node(h, a, &children, &mut seen);
        }
    }
    h.push_str("</ul>\n");
}

fn tree_node<'a>(
    h: &mut String,
    a: &'a ReportAgent,
    children: &BTreeMap<&str, Vec<&'a ReportAgent>>,
    seen: &mut HashSet<&'a str>,
) {
    if !seen.insert(a.id.as_str()) {
        return;
    }
    let also: Vec<&str> = a.depends_on.iter().skip(1).map(String::as_str).collect();
    let also = if also.is_empty() {
        String::new()
    } else {
        format!(
            " <span class=\"note\">also after {}</span>",
            escape(&also.join(", "))
        )
    };
    let _ = write!(
        h,
        "<li><b>{}</b> <span class=\"status-{}\">{}</span> · {} · wave {}{also}",
        escape(&a.id),
        escape(&a.status),
        escape(&a.status),
        escape(&a.role),
        a.wave
    );
    if let Some(kids) = children.get(a.id.as_str()) {
        h.push_str("<ul class=\"deps\">");
        for kid in kids {
            tree_node(h, kid, children, seen);
        }
        h.push_str("</ul>");
    }
    h.push_str("</li>\n");
}

fn interrupts(h: &mut String, r: &RunReport) {
    h.push_str("<h2>Interrupts</h2>\n");
    if r.pauses.is_empty() {
        h.push_str("<p class=\"note\">The run was never paused.</p>\n");
        return;
    }
    for p in &r.pauses {
        let resumed = match p.resumed_at_ms {
            Some(at) => format!("resumed after {}", span_label(at - p.paused_at_ms)),
            None => "not resumed".into(),
        };
        let _ = write!(
            h,
            "<h3>Pause {} at +{} (asked by {}; {resumed})</h3>\n<table class=\"pause\"><tbody>",
            p.number,
            span_label(p.paused_at_ms - r.started_at_ms),
            escape(&p.requested_by)
        );
        for (label, names) in [
            ("finished", &p.finished),
            ("failed", &p.failed),
            ("in flight", &p.in_flight),
            ("pending", &p.pending),
        ] {
            let _ = write!(
                h,
                "<tr><th>{label}</th><td>{}</td></tr>",
                if names.is_empty() {
                    "–".into()
                } else {
                    escape(&names.join(", "))
                }
            );
        }
        h.push_str("</tbody></table>\n");
        if !p.next_steps.is_empty() {
            h.push_str("<ul class=\"next-steps\">");
            for step in &p.next_steps {
                let _ = write!(h, "<li>{}</li>", escape(step));
            }
            h.push_str("</ul>\n");
        }
    }
}

fn details(h: &mut String, r: &RunReport) {
    h.push_str("<h2>Answers and changes</h2>\n");
    for a in &r.agents {
        let _ = writeln!(
            h,
            "<section class=\"agent\" id=\"agent-{id}\"><h3>{id} <span class=\"note\">{}</span></h3>",
            escape(&a.role),
            id = escape(&a.id)
        );
        match &a.final_answer {
            Some(answer) => {
                let _ = write!(
                    h,
                    "<pre class=\"answer\">{}</pre>{}",
                    escape(&answer.text),
                    clip_note(
                        answer,
                        &format!(
                            "`orch-audit turns {} --agent {} --content` prints it whole",
                            r.session, a.id
                        )
                    )
                );
            }
            None => h.push_str("<p class=\"note\">No completed turn, so no final answer.</p>"),
        }
        if let Some(patch) = &a.patch {
            let _ = write!(
                h,
                "<details class=\"patch\"><summary>changes.patch ({})</summary><pre>{}</pre>{}</details>",
                bytes_label(patch.total_bytes),
                escape(&patch.text),
                clip_note(
                    patch,
                    &format!(
                        "`orch-audit cat /runs/{}/agents/{}/changes.patch` prints it whole",
                        r.session, a.id
                    )
                )
            );
        }
        h.push_str("</section>\n");
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
