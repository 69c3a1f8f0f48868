//! Which pane goes in which tab: the multiplexer-neutral layout plan.
//!
//! Owns the tab rules shared by Zellij and tmux: tab `core-logs` holds the first four
//! agents, tab `spawned-agents` holds the timeline pane and the next four, then
//! `agent-logs-<n>` tabs (n = 1, 2, …) hold four each. The autonomous-orchestrator agent,
//! when enabled, takes the next slot after the initial agents. Agents added mid-run keep
//! filling slots in the same order (see [`placement_for_slot`]), so a live session always
//! looks like a layout generated for all of its agents at once.
//!
//! Does not own KDL, tmux commands or any I/O.

use std::path::{Path, PathBuf};

/// Agent panes per tab.
pub const PANES_PER_TAB: usize = 4;
/// Name of the first tab (first four agents).
pub const CORE_TAB: &str = "core-logs";
/// Name of the second tab (timeline pane plus the next four agents).
pub const SPAWNED_TAB: &str = "spawned-agents";
/// Prefix of the tabs after the second one: `agent-logs-1`, `agent-logs-2`, …
pub const EXTRA_TAB_PREFIX: &str = "agent-logs-";
/// Name of the timeline pane.
pub const TIMELINE_PANE: &str = "timeline";
/// Name of the status board's pane.
pub const BOARD_PANE: &str = "board";

/// One agent to show: its display name (untrusted text) and its log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentPane {
    pub name: String,
    pub log: PathBuf,
}

impl AgentPane {
    pub fn new(name: impl Into<String>, log: impl Into<PathBuf>) -> Self {
        AgentPane {
            name: name.into(),
            log: log.into(),
        }
    }
}

/// What a pane shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaneKind {
    /// An agent log, in slot order.
    Agent { slot: usize },
    /// The run's timeline log.
    Timeline,
    /// The status board (`launch status --watch`).
    Board,
}

/// One pane: a title and the log it tails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PanePlan {
    pub kind: PaneKind,
    /// Display title, already made safe for a terminal (see [`display_title`]).
    pub title: String,
    pub log: PathBuf,
    /// The pane's program and arguments; empty for a pane that tails `log`.
    pub command: Vec<String>,
}

impl PanePlan {
    /// What the pane runs: its command, or `tail -n +1 -F <log>`.
    pub fn argv(&self) -> Result<Vec<String>, crate::mux::MuxError> {
        if self.command.is_empty() {
            Ok(crate::mux::tail_argv(crate::mux::layout::path_str(
                &self.log,
            )?))
        } else {
            Ok(self.command.clone())
        }
    }
}

/// One tab (a tmux window) and its panes, top-left to bottom-right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TabPlan {
    pub name: String,
    pub panes: Vec<PanePlan>,
}

/// All tabs of a session, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutPlan {
    pub tabs: Vec<TabPlan>,
}

impl LayoutPlan {
    /// The plan with the status board as the first pane of `spawned-agents`, running
    /// `argv` (the board of this run). Agent slots do not change.
    pub fn with_board(mut self, argv: Vec<String>) -> Self {
        if let Some(tab) = self.tabs.get_mut(1) {
            tab.panes.insert(
                0,
                PanePlan {
                    kind: PaneKind::Board,
                    title: BOARD_PANE.to_owned(),
                    log: PathBuf::new(),
                    command: argv,
                },
            );
        }
        self
    }

    /// Agent slots taken by this plan; the next agent added mid-run takes this slot.
    pub fn agent_slots(&self) -> usize {
        self.tabs
            .iter()
            .flat_map(|tab| &tab.panes)
            .filter(|pane| matches!(pane.kind, PaneKind::Agent { .. }))
            .count()
    }
}

impl LayoutPlan {
    /// Agent panes of this plan that a live session lacks, in slot order. `live` holds
    /// `(tab name, pane title)` of the session's panes (from `list-panes`). The launcher
    /// uses it to add panes that could not be added earlier (e.g. a new Zellij tab while
    /// no client was attached): pass each one's slot to [`placement_for_slot`].
    pub fn missing_agent_panes(&self, live: &[(String, String)]) -> Vec<PanePlan> {
        let mut unmatched: Vec<&(String, String)> = live.iter().collect();
        let mut missing = Vec::new();
        for tab in &self.tabs {
            for pane in &tab.panes {
                if !matches!(pane.kind, PaneKind::Agent { .. }) {
                    continue;
                }
                let found = unmatched
                    .iter()
                    .position(|(t, title)| *t == tab.name && *title == pane.title);
                match found {
                    Some(index) => {
                        unmatched.swap_remove(index);
                    }
                    None => missing.push(pane.clone()),
                }
            }
        }
        missing
    }
}

/// Whether a pane added mid-run goes into an existing tab or needs a new one first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TabAction {
    UseExisting,
    CreateNew,
}

/// Where the agent in a given slot lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotPlacement {
    /// Index of the tab in the session (0 = `core-logs`).
    pub tab_index: usize,
    pub tab_name: String,
    /// Position of the pane among the agent panes of its tab (0..4).
    pub position: usize,
    pub tab_action: TabAction,
}

/// The tab of the agent in `slot` (0-based, counting every agent of the run in order),
/// and whether that slot opens a new tab. `core-logs` and `spawned-agents` always
/// exist; an `agent-logs-<n>` tab is created by the first agent that lands in it.
pub fn placement_for_slot(slot: usize) -> SlotPlacement {
    let tab_index = slot / PANES_PER_TAB;
    let position = slot % PANES_PER_TAB;
    let tab_action = if tab_index >= 2 && position == 0 {
        TabAction::CreateNew
    } else {
        TabAction::UseExisting
    };
    SlotPlacement {
        tab_index,
        tab_name: tab_name(tab_index),
        position,
        tab_action,
    }
}

/// Name of the tab at `index`.
pub fn tab_name(index: usize) -> String {
    match index {
        0 => CORE_TAB.to_owned(),
        1 => SPAWNED_TAB.to_owned(),
        n => format!("{EXTRA_TAB_PREFIX}{}", n - 1),
    }
}

/// Plans the tabs for the agents known at start, in order, plus the autonomous
/// orchestrator (which takes the next slot) when enabled. `core-logs` and
/// `spawned-agents` are always present, even when empty of agents.
pub fn plan_layout(
    agents: &[AgentPane],
    timeline_log: &Path,
    autonomous: Option<&AgentPane>,
) -> LayoutPlan {
    let mut tabs = vec![
        TabPlan {
            name: tab_name(0),
            panes: Vec::new(),
        },
        TabPlan {
            name: tab_name(1),
            panes: vec![PanePlan {
                kind: PaneKind::Timeline,
                title: TIMELINE_PANE.to_owned(),
                log: timeline_log.to_path_buf(),
                command: Vec::new(),
            }],
        },
    ];
    for (slot, agent) in agents.iter().chain(autonomous).enumerate() {
        let placement = placement_for_slot(slot);
        if placement.tab_index >= tabs.len() {
            tabs.push(TabPlan {
                name: placement.tab_name,
                panes: Vec::new(),
            });
        }
        tabs[placement.tab_index]
            .panes
            .push(agent_pane(slot, agent));
    }
    LayoutPlan { tabs }
}

/// The pane of the agent in `slot`.
pub fn agent_pane(slot: usize, agent: &AgentPane) -> PanePlan {
    PanePlan {
        kind: PaneKind::Agent { slot },
        title: display_title(&agent.name),
        log: agent.log.clone(),
        command: Vec::new(),
    }
}

/// A pane title safe to hand to a terminal multiplexer: control characters (newlines,
/// ESC, BEL, …) become `?` so a name cannot move the cursor or emit escape sequences.
/// Quotes, spaces and unicode stay as they are; the writers quote them as data.
pub fn display_title(name: &str) -> String {
    let title: String = name
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if title.trim().is_empty() {
        "?".to_owned()
    } else {
        title
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agents(n: usize) -> Vec<AgentPane> {
        (0..n)
            .map(|i| AgentPane::new(format!("a{i}"), format!("/logs/a{i}.log")))
            .collect()
    }

    fn shape(plan: &LayoutPlan) -> Vec<(String, usize)> {
        plan.tabs
            .iter()
            .map(|tab| (tab.name.clone(), tab.panes.len()))
            .collect()
    }

    fn tabs(spec: &[(&str, usize)]) -> Vec<(String, usize)> {
        spec.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
    }

    #[test]
    fn tabs_follow_the_four_per_tab_rule() {
        let timeline = Path::new("/logs/timeline.log");
        let cases: &[(usize, &[(&str, usize)])] = &[
            (1, &[("core-logs", 1), ("spawned-agents", 1)]),
            (4, &[("core-logs", 4), ("spawned-agents", 1)]),
            (5, &[("core-logs", 4), ("spawned-agents", 2)]),
            (8, &[("core-logs", 4), ("spawned-agents", 5)]),
            (
                9,
                &[("core-logs", 4), ("spawned-agents", 5), ("agent-logs-1", 1)],
            ),
            (
                13,
                &[
                    ("core-logs", 4),
                    ("spawned-agents", 5),
                    ("agent-logs-1", 4),
                    ("agent-logs-2", 1),
                ],
            ),
        ];
        for (n, expected) in cases {
            let plan = plan_layout(&agents(*n), timeline, None);
            assert_eq!(shape(&plan), tabs(expected), "{n} agents");
            assert_eq!(plan.agent_slots(), *n);
        }
    }

    #[test]
    fn timeline_leads_the_spawned_agents_tab() {
        let plan = plan_layout(&agents(6), Path::new("/logs/timeline.log"), None);
        let spawned = &plan.tabs[1];
        assert_eq!(spawned.panes[0].kind, PaneKind::Timeline);
        assert_eq!(spawned.panes[0].log, Path::new("/logs/timeline.log"));
        assert_eq!(spawned.panes[1].kind, PaneKind::Agent { slot: 4 });
        assert_eq!(spawned.panes[1].title, "a4");
    }

    #[test]
    fn autonomous_orchestrator_takes_the_next_slot() {
        let auto = AgentPane::new(
            "autonomous-orchestrator",
            "/logs/autonomous-orchestrator.log",
        );
        let plan = plan_layout(&agents(4), Path::new("/t.log"), Some(&auto));
        assert_eq!(
            shape(&plan),
            tabs(&[("core-logs", 4), ("spawned-agents", 2)])
        );
        assert_eq!(plan.tabs[1].panes[1].title, "autonomous-orchestrator");
        assert_eq!(plan.tabs[1].panes[1].kind, PaneKind::Agent { slot: 4 });
    }

    #[test]
    fn mid_run_placement_matches_a_fresh_layout() {
        let timeline = Path::new("/t.log");
        for total in 1..=21 {
            let fresh = plan_layout(&agents(total), timeline, None);
            // Grow from three agents, one at a time, as the orchestrator would.
            let mut grown = plan_layout(&agents(total.min(3)), timeline, None);
            for slot in grown.agent_slots()..total {
                let placement = placement_for_slot(slot);
                match placement.tab_action {
                    TabAction::CreateNew => {
                        assert_eq!(placement.tab_index, grown.tabs.len(), "slot {slot}");
                        grown.tabs.push(TabPlan {
                            name: placement.tab_name.clone(),
                            panes: Vec::new(),
                        });
                    }
                    TabAction::UseExisting => {
                        assert!(placement.tab_index < grown.tabs.len(), "slot {slot}");
                    }
                }
                let tab = &mut grown.tabs[placement.tab_index];
                assert_eq!(tab.name, placement.tab_name);
                tab.panes.push(agent_pane(
                    slot,
                    &AgentPane::new(format!("a{slot}"), format!("/logs/a{slot}.log")),
                ));
            }
            assert_eq!(grown, fresh, "{total} agents");
        }
    }

    #[test]
    fn missing_panes_are_found_by_tab_and_title() {
        let mut all = agents(9);
        all[5].name = "a0".to_owned(); // a duplicate title in another tab
        let plan = plan_layout(&all, Path::new("/t.log"), None);
        let live: Vec<(String, String)> = [
            ("core-logs", "a0"),
            ("core-logs", "a1"),
            ("core-logs", "a2"),
            ("core-logs", "a3"),
            ("spawned-agents", "timeline"),
            ("spawned-agents", "a4"),
            ("spawned-agents", "a6"),
            ("spawned-agents", "a7"),
        ]
        .iter()
        .map(|(t, p)| ((*t).to_owned(), (*p).to_owned()))
        .collect();
        let missing: Vec<PaneKind> = plan
            .missing_agent_panes(&live)
            .iter()
            .map(|p| p.kind)
            .collect();
        assert_eq!(
            missing,
            [PaneKind::Agent { slot: 5 }, PaneKind::Agent { slot: 8 }]
        );
    }

    #[test]
    fn placement_names_and_positions() {
        let p = placement_for_slot(8);
        assert_eq!(
            (p.tab_index, p.tab_name.as_str(), p.position),
            (2, "agent-logs-1", 0)
        );
        assert_eq!(p.tab_action, TabAction::CreateNew);
        assert_eq!(placement_for_slot(4).tab_action, TabAction::UseExisting);
        assert_eq!(placement_for_slot(11).tab_action, TabAction::UseExisting);
        assert_eq!(placement_for_slot(12).tab_name, "agent-logs-2");
    }

    #[test]
    fn titles_cannot_carry_control_characters() {
        assert_eq!(display_title("ok \"name\" é"), "ok \"name\" é");
        assert_eq!(display_title("a\nb\x1b[2Jc\x07"), "a?b?[2Jc?");
        assert_eq!(display_title(""), "?");
        assert_eq!(display_title("  "), "?");
    }
}
