//! `launch resume` and `launch continue` through the real binaries, with a fake `codex`
//! that records each call: a run killed with SIGKILL (or stopped) in the middle of its
//! dynamic wave goes on from the audit store. The finished agent is not run again, the
//! cut-off agents continue on their threads (`codex exec resume <thread>`) and are told
//! what they had done, the pending one runs, and edits left uncommitted in a cut-off
//! agent's worktree end up in its commit. A follow-up run starts from the earlier run's
//! branch and its planner is told the earlier plan.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{
    PLANNER_AND_BUILDER_KDL, TestRepo, commit_file, git, read, scripted_codex, text, wait_for,
};

/// The body of a `scripted_codex` (whose start records every call and prompt by
/// agent) that answers by agent. The builder answers with `$STATE/blueprint` (a JSON
/// string). Agents `slow-*` write `<agent>.txt` in their worktree, say so, and then
/// hang until `$STATE/fast` exists.
const CODEX: &str = r#"echo "{\"type\":\"thread.started\",\"thread_id\":\"t-$agent\"}"
case "$agent" in
  slow-*)
    if [ ! -f "$STATE/fast" ]; then
      echo "edit by $agent" > "$agent.txt"
      echo "{\"type\":\"item.completed\",\"item\":{\"id\":\"c1\",\"type\":\"command_execution\",\"command\":\"write $agent.txt\",\"aggregated_output\":\"\",\"exit_code\":0,\"status\":\"completed\"}}"
      touch "$STATE/started.$agent"
      sleep 60
    fi
    ;;
esac
if [ "$agent" = builder ]; then
  answer=$(cat "$STATE/blueprint")
else
  answer="\"done: $agent\""
fi
printf '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":%s}}\n' "$answer"
echo '{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"output_tokens":5}}'
"#;

/// The builder's blueprint: `quick` and two slow agents at once, then `last` after all
/// three (every agent has one turn).
const BLUEPRINT: &str = "```json\n{\"agents\":[\
{\"id\":\"quick\",\"role\":\"Quick\",\"prompt\":\"Do the quick part.\",\"dependsOn\":[]},\
{\"id\":\"slow-a\",\"role\":\"Slow A\",\"prompt\":\"Do part A.\",\"dependsOn\":[]},\
{\"id\":\"slow-b\",\"role\":\"Slow B\",\"prompt\":\"Do part B.\",\"dependsOn\":[]},\
{\"id\":\"last\",\"role\":\"Last\",\"prompt\":\"Finish.\",\"dependsOn\":[\"quick\",\"slow-a\",\"slow-b\"]}]}\n```";

struct Squad {
    repo: TestRepo,
    codex: std::path::PathBuf,
}

impl Squad {
    fn new() -> Self {
        let repo = TestRepo::new();
        commit_file(&repo.root(), "orch.kdl", PLANNER_AND_BUILDER_KDL);
        let (codex, _) = scripted_codex(&repo, CODEX, BLUEPRINT);
        Squad { repo, codex }
    }

    fn state(&self) -> std::path::PathBuf {
        self.repo.dir.path().join("state")
    }

    /// `launch ARGS` with the fake codex; a run (not `ls` or `ctl`) without panes.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.repo.launch();
        cmd.args(args);
        if !matches!(args.first(), Some(&"ls") | Some(&"ctl")) {
            cmd.args(["--mux", "none", "--notify", "none"]);
        }
        cmd.env("ORCH_CODEX_BIN", &self.codex)
            .env("STATE", self.state());
        cmd
    }

    fn start(&self, session: &str) -> Child {
        self.command(&[
            "--prompt",
            "Ship it",
            "--backend",
            "codex",
            "--session",
            session,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
    }

    /// Waits until `quick` finished and both slow agents are in their turn, with their
    /// thread and first command in the store (a kill before that would leave nothing to
    /// continue on).
    fn wait_mid_wave(&self, session: &str) {
        let state = self.state();
        wait_for(
            "the dynamic wave under way",
            Duration::from_secs(60),
            || {
                state.join("started.slow-a").exists()
                    && state.join("started.slow-b").exists()
                    && self
                        .timeline()
                        .contains("agent_finished quick status=succeeded")
                    && ["slow-a", "slow-b"].iter().all(|agent| {
                        let out = self
                            .repo
                            .audit_command()
                            .args(["events", session, "--agent", agent, "--kind", "command"])
                            .output()
                            .unwrap();
                        text(&out.stdout).contains(&format!("write {agent}.txt"))
                    })
            },
        );
    }

    fn timeline(&self) -> String {
        read(&self.repo.only_run().join("logs/timeline.log"))
    }

    fn calls(&self, agent: &str) -> Vec<String> {
        read(&self.state().join(format!("calls.{agent}")))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `launch ctl stop`, then waits for the run's `launch` to end.
    fn stop(&self, session: &str, launch: &mut Child) {
        let stop = self
            .command(&["ctl", "stop", "--session", session])
            .output()
            .unwrap();
        assert!(stop.status.success(), "{}", text(&stop.stderr));
        wait_gone(launch);
    }

    fn resume(&self, session: &str) -> std::process::Output {
        std::fs::write(self.state().join("fast"), "").unwrap();
        self.command(&["resume", session]).output().unwrap()
    }
}

fn wait_gone(child: &mut Child) {
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "launch did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The stored turn records of a run.
fn stored_turns(repo: &TestRepo, session: &str) -> Vec<serde_json::Value> {
    let json = repo.audit(&["turns", session, "--json"]);
    serde_json::from_str(&json).unwrap()
}

fn assert_resumed(squad: &Squad, session: &str, stopped: bool) {
    let out = squad.resume(session);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Finished agents are not run again; the cut-off ones continue on their threads.
    for agent in ["planner", "builder", "quick"] {
        assert_eq!(
            squad.calls(agent).len(),
            1,
            "{agent}: {:?}",
            squad.calls(agent)
        );
    }
    for agent in ["slow-a", "slow-b"] {
        let calls = squad.calls(agent);
        assert_eq!(calls.len(), 2, "{agent}: {calls:?}");
        assert!(
            calls[1].contains(&format!("resume -- t-{agent} -")),
            "{agent} continues its thread: {calls:?}"
        );
        let prompt = read(&squad.state().join(format!("prompt.{agent}.2")));
        assert!(prompt.contains("was interrupted"), "{prompt}");
        assert!(
            prompt.contains(&format!("- ran `write {agent}.txt` (exit 0)")),
            "{prompt}"
        );
        assert!(prompt.contains("Do part"), "{prompt}");
        // What it had written, uncommitted, before the cut is in its commit.
        let file = format!("{agent}.txt");
        let committed = git(
            &squad.repo.root(),
            &["show", &format!("orch/{session}:{file}")],
        );
        assert_eq!(committed.trim(), format!("edit by {agent}"));
    }
    assert_eq!(squad.calls("last").len(), 1);
    // One completed record per turn; the continuation of a cut-off turn is labelled,
    // and the only other records are the attempts a stop interrupted.
    let turns = stored_turns(&squad.repo, session);
    let mut completed: Vec<(String, u64)> = Vec::new();
    for t in &turns {
        let key = (
            t["agent"].as_str().unwrap().to_owned(),
            t["turn"].as_u64().unwrap(),
        );
        match t["outcome"]["status"].as_str() {
            Some("completed") => {
                assert!(
                    !completed.contains(&key),
                    "{key:?} completed twice: {turns:?}"
                );
                completed.push(key);
            }
            Some("interrupted") => assert!(stopped, "an interrupted record after a kill: {t}"),
            other => panic!("unexpected outcome {other:?}: {t}"),
        }
    }
    assert_eq!(completed.len(), 1 + 1 + 2 + 2 + 2 + 2, "{completed:?}");
    for agent in ["slow-a", "slow-b"] {
        let first = turns
            .iter()
            .find(|t| {
                t["agent"] == agent && t["turn"] == 1 && t["outcome"]["status"] == "completed"
            })
            .unwrap();
        assert!(
            first["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "resumed"),
            "{first}"
        );
    }
    let timeline = squad.timeline();
    assert!(timeline.contains(" resumed\n"), "{timeline}");
    assert!(
        timeline.contains(
            "4 finished turn(s) are given back, not run again; 2 cut-off turn(s) continue"
        ),
        "{timeline}"
    );
    let verify = squad.repo.audit(&["verify", session]);
    assert!(verify.starts_with("ok"), "{verify}");
    let show = squad.repo.audit(&["show", session]);
    assert!(show.contains("resumed 1 time"), "{show}");
    assert!(show.contains("status succeeded"), "{show}");
    // The user's branch and tree are as they were.
    assert_eq!(
        git(&squad.repo.root(), &["status", "--porcelain"]).trim(),
        ""
    );
}

#[test]
fn a_run_killed_mid_wave_resumes_from_the_store_without_redoing_finished_work() {
    let squad = Squad::new();
    let mut launch = squad.start("crashy");
    squad.wait_mid_wave("crashy");
    launch.kill().unwrap();
    wait_gone(&mut launch);
    // `launch ls` says it crashed and can be resumed.
    let ls = squad.command(&["ls"]).output().unwrap();
    let listing = text(&ls.stdout);
    assert!(
        listing.contains("crashed") && listing.contains("`launch resume crashy`"),
        "{listing}"
    );
    assert_resumed(&squad, "crashy", false);
    // A run that succeeded is not resumed again; it is followed up.
    let again = squad.command(&["resume", "crashy"]).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("launch continue crashy"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn a_stopped_run_resumes_and_keeps_the_uncommitted_edits_of_its_cut_off_agents() {
    let squad = Squad::new();
    let mut launch = squad.start("halted");
    squad.wait_mid_wave("halted");
    squad.stop("halted", &mut launch);
    assert!(
        squad.timeline().contains("run_finished"),
        "{}",
        squad.timeline()
    );
    assert_resumed(&squad, "halted", true);
}

#[test]
fn a_follow_up_run_starts_from_the_earlier_branch_and_its_planner_sees_the_plan() {
    let squad = Squad::new();
    std::fs::write(squad.state().join("fast"), "").unwrap();
    let first = squad
        .command(&[
            "--prompt",
            "Ship it",
            "--backend",
            "codex",
            "--session",
            "first",
        ])
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", text(&first.stderr));
    let tip = git(&squad.repo.root(), &["rev-parse", "orch/first"]);
    // Its backend is the earlier run's: no --backend here.
    let next = squad
        .command(&[
            "continue",
            "first",
            "--prompt",
            "Also add rate limiting",
            "--session",
            "second",
        ])
        .output()
        .unwrap();
    assert!(next.status.success(), "{}", text(&next.stderr));
    let planner = read(&squad.state().join("prompt.planner.2"));
    assert!(planner.contains("Also add rate limiting"), "{planner}");
    assert!(
        planner.contains("The earlier run this one continues (first)"),
        "{planner}"
    );
    assert!(planner.contains("Its task was:\nShip it"), "{planner}");
    assert!(
        planner.contains("done: planner"),
        "the earlier plan: {planner}"
    );
    // The new run branch starts at the earlier one's tip.
    let base = git(
        &squad.repo.root(),
        &["merge-base", "--is-ancestor", tip.trim(), "orch/second"],
    );
    assert_eq!(base, "");
    let show = squad.repo.audit(&["show", "second"]);
    assert!(show.contains("continues run first"), "{show}");
    let ls = squad.command(&["ls"]).output().unwrap();
    assert!(
        text(&ls.stdout).contains("`launch continue first"),
        "{}",
        text(&ls.stdout)
    );
}

#[test]
fn resume_refuses_unknown_and_tampered_runs_clearly() {
    let squad = Squad::new();
    let none = squad.command(&["resume", "nope"]).output().unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(
        text(&none.stderr).contains("there is none at"),
        "{}",
        text(&none.stderr)
    );
    let bad = squad.command(&["resume", "../x"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("not allowed"));
    let prompt = squad
        .command(&["resume", "x", "--prompt", "more"])
        .output()
        .unwrap();
    assert_eq!(prompt.status.code(), Some(2));
    assert!(text(&prompt.stderr).contains("launch continue"));

    // A stopped run whose store was tampered with is refused, unless --force.
    let mut launch = squad.start("tampered");
    squad.wait_mid_wave("tampered");
    // While it runs, it is not resumed.
    let running = squad.command(&["resume", "tampered"]).output().unwrap();
    assert_eq!(running.status.code(), Some(2));
    assert!(
        text(&running.stderr).contains("still running"),
        "{}",
        text(&running.stderr)
    );
    squad.stop("tampered", &mut launch);
    let unknown = squad.command(&["resume", "nope"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("no run of that name"),
        "{}",
        text(&unknown.stderr)
    );
    tamper(&squad.repo.root().join(".orch/audit.db"));
    let refused = squad.command(&["resume", "tampered"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("does not verify"),
        "{}",
        text(&refused.stderr)
    );
}

/// Changes one stored answer in place, as a hand edit would.
fn tamper(db: &Path) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             c.execute(\"UPDATE events SET payload = replace(payload, 'done', 'DONE') WHERE kind = 'turn_finished'\"); c.commit()",
        )
        .arg(db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Changes, in place, the payload of one event of a finished agent that `launch
/// resume` does not read, nor the row after one it reads: only the whole chain, checked
/// alongside the resumed run, can tell. Returns its seq.
fn tamper_unread(db: &Path, session: &str) -> i64 {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             read = ('run_started','turn_started','started','turn_finished','agent_finished'); \
             rows = c.execute('SELECT seq, kind, agent FROM events WHERE run = ? ORDER BY seq', (sys.argv[2],)).fetchall(); \
             seq = next(s for (s, k, a), (_, pk, _) in zip(rows[1:], rows) if k not in read and pk not in read and a in ('planner','builder','quick')); \
             c.execute(\"UPDATE events SET payload = replace(payload, 'e', 'E') WHERE run = ? AND seq = ?\", (sys.argv[2], seq)); c.commit(); print(seq)",
        )
        .arg(db)
        .arg(session)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().parse().unwrap()
}

#[test]
fn a_store_that_breaks_further_back_stops_the_resumed_run_before_it_merges_anything() {
    let squad = Squad::new();
    let mut launch = squad.start("unread");
    squad.wait_mid_wave("unread");
    squad.stop("unread", &mut launch);
    let root = squad.repo.root();
    let tip = git(&root, &["rev-parse", "orch/unread"]);
    let seq = tamper_unread(&root.join(".orch/audit.db"), "unread");
    let refused = squad.resume("unread");
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("does not verify")
            && stderr.contains(&format!("seq={seq}"))
            && stderr.contains("merged nothing"),
        "{stderr}"
    );
    assert_eq!(git(&root, &["rev-parse", "orch/unread"]), tip);
    assert!(
        squad
            .timeline()
            .contains("stop_requested source=an audit store that does not verify"),
        "{}",
        squad.timeline()
    );
    assert_eq!(git(&root, &["status", "--porcelain"]).trim(), "");
    // --force goes on, and says why it could have stopped.
    let forced = squad
        .command(&["resume", "unread", "--force"])
        .output()
        .unwrap();
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert!(
        squad.timeline().contains("(going on: --force)"),
        "{}",
        squad.timeline()
    );
    assert_ne!(git(&root, &["rev-parse", "orch/unread"]), tip);
    assert_eq!(squad.calls("last").len(), 1);
}
