//! The DAG scheduler: a pure state machine that decides which agents of a wave start.
//!
//! `next(input) -> actions`, no I/O, no clocks; the async wave runner performs the
//! actions. Independent agents run in parallel up to `max_parallel`; an agent starts
//! only after all its dependencies succeeded; a failure blocks its dependants only.
//! Agents may share a lane (a features track): one of a lane runs at a time, in order,
//! and a failure in a lane does not stop the next.

use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Blocked,
}

#[derive(Debug)]
struct Node {
    id: String,
    deps: Vec<usize>,
    state: NodeState,
    lane: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchedInput {
    Start,
    Finished { id: String, outcome: NodeOutcome },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeOutcome {
    Succeeded,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchedAction {
    Launch(String),
    /// Will never run: `by` (a dependency, maybe indirect) did not succeed.
    Block {
        id: String,
        by: String,
    },
    /// Every agent has succeeded, failed or been blocked.
    Done,
}

#[derive(Debug)]
pub struct DagScheduler {
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
    max_parallel: usize,
    done: bool,
}

impl DagScheduler {
    /// `agents`: (id, dependencies) in blueprint order. Unknown dependencies are ignored
    /// (blueprints are validated before they get here).
    pub fn new(agents: &[(String, Vec<String>)], max_parallel: usize) -> Self {
        let index: HashMap<String, usize> = agents
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (id.clone(), i))
            .collect();
        let nodes = agents
            .iter()
            .map(|(id, deps)| Node {
                id: id.clone(),
                deps: deps.iter().filter_map(|d| index.get(d).copied()).collect(),
                state: NodeState::Pending,
                lane: None,
            })
            .collect();
        DagScheduler {
            nodes,
            index,
            max_parallel: max_parallel.max(1),
            done: false,
        }
    }

    /// Puts agents on lanes (`lanes[i]`: the lane of the i-th agent, `None`: its own).
    pub fn with_lanes(mut self, lanes: &[Option<usize>]) -> Self {
        for (node, lane) in self.nodes.iter_mut().zip(lanes) {
            node.lane = *lane;
        }
        self
    }

    pub fn next(&mut self, input: SchedInput) -> Vec<SchedAction> {
        let mut actions = Vec::new();
        match input {
            SchedInput::Start => {}
            SchedInput::Finished { id, outcome } => {
                if let Some(&i) = self.index.get(&id) {
                    if self.nodes[i].state == NodeState::Running {
                        self.nodes[i].state = match outcome {
                            NodeOutcome::Succeeded => NodeState::Succeeded,
                            NodeOutcome::Failed => NodeState::Failed,
                        };
                    }
                }
                self.block_dependants(&mut actions);
            }
        }
        {
            let mut running = self.count(NodeState::Running);
            for i in 0..self.nodes.len() {
                if running >= self.max_parallel {
                    break;
                }
                let lane = self.nodes[i].lane;
                let ready = self.nodes[i].state == NodeState::Pending
                    && self.nodes[i]
                        .deps
                        .iter()
                        .all(|&d| self.nodes[d].state == NodeState::Succeeded)
                    && (lane.is_none()
                        || !self
                            .nodes
                            .iter()
                            .any(|n| n.lane == lane && n.state == NodeState::Running));
                if ready {
                    self.nodes[i].state = NodeState::Running;
                    running += 1;
                    actions.push(SchedAction::Launch(self.nodes[i].id.clone()));
                }
            }
        }
        let all_settled = self.nodes.iter().all(|n| {
            matches!(
                n.state,
                NodeState::Succeeded | NodeState::Failed | NodeState::Blocked
            )
        });
        if all_settled && !self.done {
            self.done = true;
            actions.push(SchedAction::Done);
        }
        actions
    }

    /// Agents not started whose dependencies have all started and none failed: the
    /// next to start, in blueprint order.
    pub fn upcoming(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| {
                n.state == NodeState::Pending
                    && n.deps.iter().all(|&d| {
                        matches!(
                            self.nodes[d].state,
                            NodeState::Running | NodeState::Succeeded
                        )
                    })
            })
            .map(|n| n.id.as_str())
            .collect()
    }

    fn count(&self, state: NodeState) -> usize {
        self.nodes.iter().filter(|n| n.state == state).count()
    }

    /// Blocks every pending agent with a failed or blocked dependency, transitively.
    fn block_dependants(&mut self, actions: &mut Vec<SchedAction>) {
        loop {
            let mut changed = false;
            for i in 0..self.nodes.len() {
                if self.nodes[i].state != NodeState::Pending {
                    continue;
                }
                let culprit = self.nodes[i].deps.iter().copied().find(|&d| {
                    matches!(self.nodes[d].state, NodeState::Failed | NodeState::Blocked)
                });
                if let Some(d) = culprit {
                    self.nodes[i].state = NodeState::Blocked;
                    actions.push(SchedAction::Block {
                        id: self.nodes[i].id.clone(),
                        by: self.nodes[d].id.clone(),
                    });
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }
}

/// The first dependency cycle among `edges` (id, dependencies), as `a → b → a`.
pub fn find_cycle(edges: &[(String, Vec<String>)]) -> Option<Vec<String>> {
    let index: HashMap<&str, usize> = edges
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i))
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; edges.len()];
    for start in 0..edges.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next dependency to look at).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::Active;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let deps = &edges[node].1;
            if *next < deps.len() {
                let dep = &deps[*next];
                *next += 1;
                let Some(&d) = index.get(dep.as_str()) else {
                    continue;
                };
                match marks[d] {
                    Mark::Active => {
                        let from = stack.iter().position(|&(n, _)| n == d).unwrap_or(0);
                        let mut cycle: Vec<String> = stack[from..]
                            .iter()
                            .map(|&(n, _)| edges[n].0.clone())
                            .collect();
                        cycle.push(edges[d].0.clone());
                        return Some(cycle);
                    }
                    Mark::New => {
                        marks[d] = Mark::Active;
                        stack.push((d, 0));
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_agent_of_a_lane_runs_at_a_time_and_a_failure_does_not_stop_the_lane() {
        let edges = dag(&[("a1", &[]), ("b1", &[]), ("a2", &[]), ("a3", &[])]);
        let mut s = DagScheduler::new(&edges, 4).with_lanes(&[Some(0), Some(1), Some(0), Some(0)]);
        assert_eq!(launched(&s.next(SchedInput::Start)), ["a1", "b1"]);
        assert_eq!(launched(&s.next(finished("b1", true))), Vec::<&str>::new());
        assert_eq!(launched(&s.next(finished("a1", false))), ["a2"]);
        assert_eq!(launched(&s.next(finished("a2", true))), ["a3"]);
        let actions = s.next(finished("a3", true));
        assert!(actions.contains(&SchedAction::Done), "{actions:?}");
    }

    fn dag(spec: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        spec.iter()
            .map(|(id, deps)| (id.to_string(), deps.iter().map(|d| d.to_string()).collect()))
            .collect()
    }

    #[test]
    fn upcoming_are_the_pending_agents_whose_dependencies_all_started() {
        let agents = vec![
            ("a".to_string(), vec![]),
            ("b".to_string(), vec![]),
            ("c".to_string(), vec!["a".to_string()]),
            ("d".to_string(), vec!["a".to_string(), "b".to_string()]),
            ("e".to_string(), vec!["c".to_string()]),
        ];
        let mut s = DagScheduler::new(&agents, 1);
        assert_eq!(launched(&s.next(SchedInput::Start)), ["a"]);
        // b is held back by max-parallel: it starts next, as does c.
        assert_eq!(s.upcoming(), ["b", "c"]);
        s.next(SchedInput::Finished {
            id: "a".into(),
            outcome: NodeOutcome::Succeeded,
        });
        assert_eq!(s.upcoming(), ["c", "d"]);
        s.next(SchedInput::Finished {
            id: "b".into(),
            outcome: NodeOutcome::Failed,
        });
        // d is blocked now; e waits for c, which is running.
        assert_eq!(s.upcoming(), ["e"]);
    }

    fn launched(actions: &[SchedAction]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                SchedAction::Launch(id) => Some(id.as_str()),
                _ => None,
            })
            .collect()
    }

    fn finished(id: &str, ok: bool) -> SchedInput {
        SchedInput::Finished {
            id: id.into(),
            outcome: if ok {
                NodeOutcome::Succeeded
            } else {
                NodeOutcome::Failed
            },
        }
    }

    #[test]
    fn independent_agents_start_together_and_dependants_wait() {
        let mut s = DagScheduler::new(
            &dag(&[("api", &[]), ("ui", &[]), ("tests", &["api", "ui"])]),
            4,
        );
        assert_eq!(launched(&s.next(SchedInput::Start)), ["api", "ui"]);
        assert_eq!(launched(&s.next(finished("api", true))), Vec::<&str>::new());
        assert_eq!(launched(&s.next(finished("ui", true))), ["tests"]);
        assert_eq!(s.next(finished("tests", true)), vec![SchedAction::Done]);
    }

    #[test]
    fn max_parallel_caps_running_agents() {
        let mut s = DagScheduler::new(&dag(&[("a", &[]), ("b", &[]), ("c", &[])]), 2);
        assert_eq!(launched(&s.next(SchedInput::Start)), ["a", "b"]);
        assert_eq!(launched(&s.next(finished("b", true))), ["c"]);
    }

    #[test]
    fn a_failure_blocks_only_its_dependants_transitively() {
        let mut s = DagScheduler::new(
            &dag(&[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("d", &[])]),
            4,
        );
        assert_eq!(launched(&s.next(SchedInput::Start)), ["a", "d"]);
        let actions = s.next(finished("a", false));
        assert_eq!(
            actions,
            vec![
                SchedAction::Block {
                    id: "b".into(),
                    by: "a".into()
                },
                SchedAction::Block {
                    id: "c".into(),
                    by: "b".into()
                },
            ]
        );
        assert_eq!(s.next(finished("d", true)), vec![SchedAction::Done]);
    }

    #[test]
    fn an_empty_wave_is_done_at_once() {
        let mut s = DagScheduler::new(&[], 4);
        assert_eq!(s.next(SchedInput::Start), vec![SchedAction::Done]);
    }

    #[test]
    fn cycles_are_found_and_named() {
        assert_eq!(
            find_cycle(&dag(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])])).unwrap(),
            ["a", "b", "c", "a"]
        );
        assert_eq!(find_cycle(&dag(&[("a", &["a"])])).unwrap(), ["a", "a"]);
        assert_eq!(
            find_cycle(&dag(&[("a", &[]), ("b", &["a"]), ("c", &["a", "b", "zz"])])),
            None
        );
    }
}
