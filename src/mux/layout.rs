//! Zellij layout files, written with the kdl crate and emitted as KDL v1.
//!
//! Owns the translation of a [`LayoutPlan`] into a Zellij layout: tab and status bars on
//! every tab, agent panes two per row, every pane running `tail -n +1 -F <log>`. Names
//! and paths are KDL string values built as data, never pasted into KDL text, so quotes,
//! newlines and unicode cannot change the structure. Zellij 0.45 parses KDL v1 only.
//!
//! Does not decide which pane goes where (see `plan`) and does no I/O.

use std::path::Path;

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};

use crate::mux::error::MuxError;
use crate::mux::plan::{LayoutPlan, PanePlan, TabPlan};

/// The argv of a pane tailing `log` (`-F`: the file may not exist yet).
pub fn tail_argv(log: &str) -> Vec<String> {
    ["tail", "-n", "+1", "-F", log]
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// The whole-session layout (`layout.kdl`): one `tab` per planned tab, the first one
/// focused, every pane started in `cwd` (the project root).
pub fn zellij_layout(plan: &LayoutPlan, cwd: &Path) -> Result<String, MuxError> {
    let mut layout = KdlNode::new("layout");
    let children = layout.ensure_children();
    children
        .nodes_mut()
        .push(string_node("cwd", path_str(cwd)?));
    let mut template = KdlNode::new("default_tab_template");
    let template_children = template.ensure_children();
    template_children
        .nodes_mut()
        .push(bar_pane("zellij:tab-bar"));
    template_children.nodes_mut().push(KdlNode::new("children"));
    template_children
        .nodes_mut()
        .push(bar_pane("zellij:status-bar"));
    children.nodes_mut().push(template);
    for (index, tab) in plan.tabs.iter().enumerate() {
        let mut node = KdlNode::new("tab");
        node.push(("name", tab.name.as_str()));
        if index == 0 {
            node.push(("focus", true));
        }
        node.set_children(tab_body(tab)?);
        children.nodes_mut().push(node);
    }
    Ok(emit_v1(layout))
}

/// The layout of one tab opened mid-run (`zellij action new-tab --layout FILE`): the
/// bars and the tab's panes, so the new tab looks like the generated ones.
pub fn zellij_tab_layout(tab: &TabPlan, cwd: &Path) -> Result<String, MuxError> {
    let mut layout = KdlNode::new("layout");
    let children = layout.ensure_children();
    children
        .nodes_mut()
        .push(string_node("cwd", path_str(cwd)?));
    children.nodes_mut().push(bar_pane("zellij:tab-bar"));
    let mut body = KdlNode::new("pane");
    body.set_children(tab_body(tab)?);
    children.nodes_mut().push(body);
    children.nodes_mut().push(bar_pane("zellij:status-bar"));
    Ok(emit_v1(layout))
}

/// The panes of a tab: two per row, a timeline pane gets a row of its own.
fn tab_body(tab: &TabPlan) -> Result<KdlDocument, MuxError> {
    let mut body = KdlDocument::new();
    let (full_rows, grid): (Vec<&PanePlan>, Vec<&PanePlan>) = tab.panes.iter().partition(|pane| {
        matches!(
            pane.kind,
            crate::mux::plan::PaneKind::Timeline | crate::mux::plan::PaneKind::Board
        )
    });
    for pane in full_rows {
        body.nodes_mut().push(tail_pane(pane)?);
    }
    for row in grid.chunks(2) {
        if let [single] = row {
            body.nodes_mut().push(tail_pane(single)?);
        } else {
            let mut row_node = KdlNode::new("pane");
            row_node.push(("split_direction", "vertical"));
            let row_children = row_node.ensure_children();
            for pane in row {
                row_children.nodes_mut().push(tail_pane(pane)?);
            }
            body.nodes_mut().push(row_node);
        }
    }
    Ok(body)
}

/// `pane name="<title>" command="tail" { args "-n" "+1" "-F" "<log>"; }` (or the
/// pane's own command).
fn tail_pane(pane: &PanePlan) -> Result<KdlNode, MuxError> {
    let argv = pane.argv()?;
    let mut node = KdlNode::new("pane");
    node.push(("name", pane.title.as_str()));
    node.push(("command", argv[0].as_str()));
    let mut args = KdlNode::new("args");
    for arg in &argv[1..] {
        args.push(KdlEntry::new(arg.as_str()));
    }
    node.ensure_children().nodes_mut().push(args);
    Ok(node)
}

/// `pane size=1 borderless=true { plugin location="<url>"; }`
fn bar_pane(location: &str) -> KdlNode {
    let mut node = KdlNode::new("pane");
    node.push(("size", KdlValue::Integer(1)));
    node.push(("borderless", true));
    let mut plugin = KdlNode::new("plugin");
    plugin.push(("location", location));
    node.ensure_children().nodes_mut().push(plugin);
    node
}

pub(crate) fn string_node(name: &str, value: &str) -> KdlNode {
    let mut node = KdlNode::new(name);
    node.push(KdlEntry::new(value));
    node
}

pub(crate) fn path_str(path: &Path) -> Result<&str, MuxError> {
    path.to_str().ok_or_else(|| MuxError::NonUtf8Path {
        path: path.to_path_buf(),
    })
}

/// Formats a node as a KDL v1 document (what Zellij 0.45 parses).
pub(crate) fn emit_v1(node: KdlNode) -> String {
    let mut doc = KdlDocument::new();
    doc.nodes_mut().push(node);
    emit_doc_v1(doc)
}

pub(crate) fn emit_doc_v1(mut doc: KdlDocument) -> String {
    doc.autoformat();
    doc.ensure_v1();
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mux::plan::{AgentPane, plan_layout};
    use std::path::PathBuf;

    /// Names a user could type, plus ones built to break quoting.
    pub(crate) fn hostile_agents(n: usize) -> Vec<AgentPane> {
        let names = [
            "planner",
            "research er",
            "say \"hi\"",
            "naïve-ünïcode ✓ 日本",
            "new\nline",
            "back\\slash } { pane",
            "\"; command=\"rm\" args \"-rf\" \"/",
            "$(touch /tmp/pwned) `id`",
            "tab\tand \u{1b}[31mred",
            "slash/and 'single'",
            "#true #null",
            "r#\"raw\"#",
            "last",
        ];
        (0..n)
            .map(|i| {
                let name = names[i % names.len()].to_owned();
                AgentPane::new(
                    name,
                    PathBuf::from(format!("/repo/.orch/runs/run-x/logs/a{i}.log")),
                )
            })
            .collect()
    }

    fn layout_for(n: usize) -> String {
        let plan = plan_layout(
            &hostile_agents(n),
            Path::new("/repo/.orch/runs/run-x/logs/timeline.log"),
            None,
        );
        zellij_layout(&plan, Path::new("/repo")).unwrap()
    }

    #[test]
    fn layouts_snapshot() {
        for n in [1, 4, 5, 9, 13] {
            insta::assert_snapshot!(format!("layout_{n}_agents"), layout_for(n));
        }
    }

    #[test]
    fn layouts_are_v1_and_names_round_trip_as_data() {
        for n in [1, 4, 5, 9, 13] {
            let text = layout_for(n);
            assert!(
                !text.contains("=#true") && !text.contains("=#false"),
                "{text}"
            );
            let doc = KdlDocument::parse_v1(&text).unwrap();
            let layout = &doc.nodes()[0];
            let tabs: Vec<&KdlNode> = layout
                .iter_children()
                .filter(|node| node.name().value() == "tab")
                .collect();
            let mut names = Vec::new();
            collect_pane_names(tabs.iter().copied(), &mut names);
            let mut expected: Vec<String> = hostile_agents(n)
                .iter()
                .map(|a| crate::mux::plan::display_title(&a.name))
                .collect();
            expected.push("timeline".to_owned());
            names.sort();
            expected.sort();
            assert_eq!(names, expected, "{n} agents");
        }
    }

    fn collect_pane_names<'a>(nodes: impl Iterator<Item = &'a KdlNode>, out: &mut Vec<String>) {
        for node in nodes {
            let name = match node.get("name") {
                Some(KdlValue::String(name)) if node.name().value() == "pane" => Some(name),
                _ => None,
            };
            if let Some(name) = name {
                out.push(name.clone());
                assert_eq!(node.get("command"), Some(&KdlValue::String("tail".into())));
                let args = node.children().unwrap().get("args").unwrap();
                let args: Vec<_> = args
                    .iter()
                    .map(|e| e.value().as_string().unwrap())
                    .collect();
                assert_eq!(&args[..3], &["-n", "+1", "-F"]);
                assert!(args[3].ends_with(".log"));
            }
            if let Some(children) = node.children() {
                collect_pane_names(children.nodes().iter(), out);
            }
        }
    }

    #[test]
    fn new_tab_layout_snapshot() {
        let plan = plan_layout(&hostile_agents(9), Path::new("/t.log"), None);
        insta::assert_snapshot!(zellij_tab_layout(&plan.tabs[2], Path::new("/repo")).unwrap());
    }

    #[test]
    fn hostile_cwd_and_log_paths_stay_one_string() {
        let root = Path::new("/tmp/we\"ird\n{ root } $(x)");
        let agents = [AgentPane::new("a", root.join("lo\"g.log"))];
        let plan = plan_layout(&agents, &root.join("timeline.log"), None);
        let text = zellij_layout(&plan, root).unwrap();
        let doc = KdlDocument::parse_v1(&text).unwrap();
        let layout = &doc.nodes()[0];
        let cwd = layout.children().unwrap().get_arg("cwd").unwrap();
        assert_eq!(cwd.as_string(), Some("/tmp/we\"ird\n{ root } $(x)"));
        assert_eq!(
            layout.children().unwrap().nodes().len(),
            4,
            "cwd, template, two tabs"
        );
    }

    #[test]
    fn the_board_pane_leads_the_spawned_tab_and_its_argv_stays_data() {
        let agents = [AgentPane::new("a", "/a.log")];
        let argv: Vec<String> = ["/bin/launch", "status", "--session", "run \"x\"\n{ y }"]
            .map(String::from)
            .to_vec();
        let plan = plan_layout(&agents, Path::new("/t.log"), None).with_board(argv.clone());
        assert_eq!(plan.agent_slots(), 1, "the board takes no agent slot");
        let spawned = &plan.tabs[1];
        assert_eq!(spawned.panes[0].title, crate::mux::plan::BOARD_PANE);
        assert_eq!(spawned.panes[1].title, "timeline");
        let text = zellij_tab_layout(spawned, Path::new("/repo")).unwrap();
        let doc = KdlDocument::parse_v1(&text).unwrap();
        let board = doc
            .nodes()
            .iter()
            .flat_map(|n| n.children().into_iter().flat_map(|c| c.nodes()))
            .flat_map(|n| {
                std::iter::once(n).chain(n.children().into_iter().flat_map(|c| c.nodes()))
            })
            .find(|n| n.get("name").and_then(|v| v.as_string()) == Some("board"))
            .expect("a board pane");
        assert_eq!(
            board.get("command").and_then(|v| v.as_string()),
            Some("/bin/launch")
        );
        let args: Vec<&str> = board
            .children()
            .unwrap()
            .get("args")
            .unwrap()
            .entries()
            .iter()
            .filter_map(|e| e.value().as_string())
            .collect();
        assert_eq!(args, &argv[1..]);
    }
}
