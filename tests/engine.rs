//! The core engine end to end: the real `launch` binary on the demo backend.

mod support;

use std::time::Duration;

use support::{TestRepo, at, read, text, timeline_events, wait_for};

#[test]
fn demo_run_finishes_with_every_log_and_parallel_then_dependant_order() {
    let repo = TestRepo::new();
    let out = repo.demo("delay=25", &["--metrics"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let run = repo.only_run();
    for agent in [
        "planner",
        "researcher",
        "builder",
        "backend-api",
        "frontend-ui",
        "integration-tests",
    ] {
        let log = read(&run.join(format!("logs/{agent}.log")));
        assert!(
            log.contains(&format!("── {agent} succeeded")),
            "{agent}.log: {log}"
        );
    }
    let events = timeline_events(&repo.timeline());
    // The parallel pair overlaps: both start before either finishes.
    let api_start = at(&events, "agent_started", "backend-api");
    let ui_start = at(&events, "agent_started", "frontend-ui");
    let api_end = at(&events, "agent_finished", "backend-api");
    let ui_end = at(&events, "agent_finished", "frontend-ui");
    assert!(api_start.max(ui_start) < api_end.min(ui_end), "{events:#?}");
    // The dependant starts only after both dependencies finished.
    let tests_start = at(&events, "agent_started", "integration-tests");
    assert!(tests_start > api_end && tests_start > ui_end, "{events:#?}");
    // Timestamps agree with the order (RFC 3339 strings sort by time).
    assert!(events[api_start].0 <= events[ui_end].0 && events[ui_start].0 <= events[api_end].0);
    assert!(events[tests_start].0 >= events[api_end].0.clone().max(events[ui_end].0.clone()));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("(run total)"),
        "--metrics prints the token table: {stderr}"
    );
}

#[test]
fn broken_blueprints_get_one_repair_then_a_clear_failure_and_nothing_outside_orch() {
    let cases = [
        ("cycle", "dependsOn forms a cycle: api → tests → api"),
        (
            "unknown-dep",
            "agent `api` depends on `database`, which is not in the blueprint",
        ),
        ("duplicate-id", "agent id `api` is used twice"),
        ("evil-id", "agent id `../evil` is not allowed"),
        ("bad-json", "the answer is not JSON"),
    ];
    for (kind, problem) in cases {
        let repo = TestRepo::new();
        let before: Vec<_> = std::fs::read_dir(repo.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        let out = repo.demo(&format!("delay=1,blueprint={kind}"), &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{kind}: {stderr}");
        assert!(
            stderr.contains("invalid blueprint from `builder` after one repair attempt"),
            "{kind}: {stderr}"
        );
        assert!(
            stderr.contains(problem),
            "{kind}: want `{problem}` in {stderr}"
        );
        let timeline = repo.timeline();
        assert!(
            timeline.contains("blueprint_rejected builder attempt=1"),
            "{kind}: {timeline}"
        );
        assert!(
            timeline.contains("blueprint_rejected builder attempt=2"),
            "{kind}: {timeline}"
        );
        assert!(
            !timeline.contains("wave_scheduled 1"),
            "{kind}: no dynamic agent may run: {timeline}"
        );
        // Nothing was written next to the repo, and inside it only .orch and .git exist.
        let after: Vec<_> = std::fs::read_dir(repo.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(before, after, "{kind}");
        let mut inside: Vec<_> = std::fs::read_dir(repo.root())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        inside.sort();
        // The repository's own README and nothing else: agents wrote nowhere.
        assert_eq!(inside, [".git", ".orch", "README.md"], "{kind}");
        let logs: Vec<_> = std::fs::read_dir(repo.only_run().join("logs"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        assert!(
            logs.iter().all(|l| [
                "planner.log",
                "researcher.log",
                "builder.log",
                "timeline.log",
                "timeline.txt"
            ]
            .contains(&l.as_str())),
            "{logs:?}"
        );
    }
}

#[test]
fn a_blueprint_fixed_by_the_repair_turn_runs() {
    let repo = TestRepo::new();
    let out = repo.demo("delay=1,blueprint=cycle-once", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let timeline = repo.timeline();
    assert!(timeline.contains("blueprint_rejected builder attempt=1"));
    assert!(!timeline.contains("attempt=2"));
    assert!(
        timeline.contains("agent_finished integration-tests status=succeeded"),
        "{timeline}"
    );
}

#[test]
fn a_crash_mid_turn_fails_only_the_dependants_and_the_run() {
    let repo = TestRepo::new();
    let out = repo.demo("delay=5,crash=frontend-ui", &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("frontend-ui (failed)") && stderr.contains("integration-tests (blocked)"),
        "{stderr}"
    );
    let timeline = repo.timeline();
    assert!(
        timeline.contains("agent_finished backend-api status=succeeded"),
        "{timeline}"
    );
    assert!(
        timeline.contains("agent_finished frontend-ui status=failed"),
        "{timeline}"
    );
    assert!(
        timeline.contains("agent_finished integration-tests status=blocked by=frontend-ui"),
        "{timeline}"
    );
    assert!(
        !timeline.contains("agent_started integration-tests"),
        "{timeline}"
    );
    let log = read(&repo.only_run().join("logs/frontend-ui.log"));
    assert!(
        log.contains("interrupted: the agent process exited mid-turn"),
        "{log}"
    );
}

#[test]
fn pause_during_a_wave_finishes_running_turns_starts_nothing_and_resume_completes() {
    let repo = TestRepo::new();
    let mut child = repo
        .launch()
        .args([
            "--prompt",
            "Ship the MVP",
            "--backend",
            "demo",
            "--mux",
            "none",
            "--demo-scenario",
            "delay=150",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the run directory", Duration::from_secs(20), || {
        !repo.run_dirs().is_empty()
    });
    let timeline_path = repo.only_run().join("logs/timeline.log");
    // Both parallel agents in their first turn (each first sets up its worktree).
    wait_for("the dynamic wave", Duration::from_secs(60), || {
        let timeline = read(&timeline_path);
        timeline.contains("turn_started backend-api turn=1")
            && timeline.contains("turn_started frontend-ui turn=1")
    });
    let pause = repo.launch().args(["ctl", "pause"]).output().unwrap();
    assert!(pause.status.success(), "{}", text(&pause.stderr));
    assert!(
        text(&pause.stdout).contains("pausing"),
        "{}",
        text(&pause.stdout)
    );
    let interrupt = repo.only_run().join("logs/interrupt.log");
    wait_for("the interrupt summary", Duration::from_secs(30), || {
        read(&interrupt).contains("pending:")
    });
    let summary = read(&interrupt);
    assert!(
        summary.contains("finished:  planner, researcher, builder"),
        "{summary}"
    );
    assert!(
        summary.contains("in flight: backend-api, frontend-ui")
            || summary.contains("in flight: frontend-ui, backend-api"),
        "{summary}"
    );
    assert!(
        summary.contains("pending:   integration-tests"),
        "{summary}"
    );
    // A second request coalesces: no second summary.
    let again = repo.launch().args(["ctl", "pause"]).output().unwrap();
    assert!(text(&again.stdout).contains("already paused"));
    // While paused nothing new starts; running turns have finished.
    let timeline = read(&timeline_path);
    let paused_at = timeline.find("run_paused").expect("run_paused in timeline");
    assert!(
        !timeline.contains("agent_started integration-tests"),
        "{timeline}"
    );
    assert_eq!(
        timeline[paused_at..].matches("turn_started").count(),
        0,
        "{timeline}"
    );
    let status = repo
        .launch()
        .args(["ctl", "status", "--json"])
        .output()
        .unwrap();
    assert!(
        text(&status.stdout).contains("\"mode\":\"paused\""),
        "{}",
        text(&status.stdout)
    );
    let resume = repo.launch().args(["ctl", "resume"]).output().unwrap();
    assert!(resume.status.success(), "{}", text(&resume.stderr));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "run did not finish after resume"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    let timeline = read(&timeline_path);
    assert!(timeline.contains("run_resumed"));
    assert!(
        timeline.contains("agent_finished integration-tests status=succeeded"),
        "{timeline}"
    );
}

#[test]
fn sigint_pauses_and_a_second_sigint_stops() {
    let repo = TestRepo::new();
    let child = repo
        .launch()
        .args([
            "--prompt",
            "Ship the MVP",
            "--backend",
            "demo",
            "--mux",
            "none",
            "--demo-scenario",
            "delay=100",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the run directory", Duration::from_secs(20), || {
        !repo.run_dirs().is_empty()
    });
    let timeline_path = repo.only_run().join("logs/timeline.log");
    wait_for("the researcher", Duration::from_secs(30), || {
        read(&timeline_path).contains("agent_started researcher")
    });
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    wait_for("the pause summary", Duration::from_secs(30), || {
        read(&timeline_path).contains("run_paused #1")
    });
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let timeline = read(&timeline_path);
    assert!(
        timeline.contains("pause_requested source=SIGINT"),
        "{timeline}"
    );
    assert!(
        timeline.contains("stop_requested source=SIGINT"),
        "{timeline}"
    );
    assert!(
        timeline.contains("run_finished status=stopped"),
        "{timeline}"
    );
    assert!(!timeline.contains("agent_started builder"), "{timeline}");
}

#[test]
fn failure_classes_take_their_paths_and_a_fallback_finishes_the_work() {
    let repo = TestRepo::new();
    std::fs::write(
        repo.root().join("orch.kdl"),
        "agent \"planner\" {\n  plan-prompt \"plan\"\n  follow-up-enabled #false\n  fallback \"demo\"\n}\n\
         agent \"coder\" {\n  plan-prompt \"code\"\n  follow-up-enabled #false\n}\n",
    )
    .unwrap();
    let out = repo.demo("delay=1,fail=planner:terminal,fail=coder:transient", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let timeline = repo.timeline();
    assert!(
        timeline.contains(
            "turn_retrying planner turn=1 class=terminal decision=falling back to backend `demo`"
        ),
        "{timeline}"
    );
    assert!(
        timeline
            .contains("turn_retrying coder turn=1 class=transient decision=retrying (attempt 2)"),
        "{timeline}"
    );
    assert!(
        timeline.contains("agent_finished coder status=succeeded"),
        "{timeline}"
    );
    let log = read(&repo.only_run().join("logs/planner.log"));
    assert!(
        log.contains("retry    terminal failure: 401 unauthorized (demo scenario) → falling back"),
        "{log}"
    );
}

#[test]
fn concise_runs_one_sentence_turns_and_no_waves() {
    let repo = TestRepo::new();
    let out = repo.demo("delay=1", &["--concise"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let timeline = repo.timeline();
    assert_eq!(timeline.matches("turn_started").count(), 3, "{timeline}");
    assert!(!timeline.contains("wave_scheduled 1"), "{timeline}");
    let full = TestRepo::new();
    let out = full.demo("delay=1", &["--concise-full"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let timeline = full.timeline();
    assert!(
        timeline.contains("wave_scheduled 1 kind=dynamic"),
        "{timeline}"
    );
    assert!(!timeline.contains("kind=follow-up"), "{timeline}");
}

#[test]
fn chains_get_continuation_and_autonomous_relay_waves_run() {
    let repo = TestRepo::new();
    let out = repo.demo("delay=1,blueprint=chain", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let timeline = repo.timeline();
    assert!(
        timeline.contains("wave_scheduled 2 kind=continuation agents=chain-followup"),
        "{timeline}"
    );

    let repo = TestRepo::new();
    let out = repo.demo("delay=1,waves=2", &["--relay", "--max-waves", "5"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let timeline = repo.timeline();
    assert!(
        timeline.contains("wave_scheduled 2 kind=relay agents=polish-1"),
        "{timeline}"
    );
    assert!(
        timeline.contains("wave_scheduled 3 kind=relay agents=polish-2"),
        "{timeline}"
    );
    assert!(timeline.contains("planned no further wave"), "{timeline}");
    assert!(
        repo.only_run()
            .join("logs/autonomous-orchestrator.log")
            .exists()
    );
}

#[test]
fn parallel_mode_warns_about_dependency_chains() {
    let repo = TestRepo::new();
    let out = repo.demo("delay=1", &["--parallel"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        repo.timeline()
            .contains("warning --parallel asked for independent specialists"),
        "{}",
        repo.timeline()
    );
}

#[test]
fn huge_lines_and_secrets_are_handled_in_logs() {
    let repo = TestRepo::new();
    let mut cmd = repo.launch();
    cmd.env("MY_SERVICE_TOKEN", "tok_live_5f3a9c2e7d1b")
        .args([
            "--backend",
            "demo",
            "--mux",
            "none",
            "--demo-scenario",
            "delay=1,huge=planner",
        ])
        .args([
            "--prompt",
            "Ship it with key sk-proj-ABCDEFGHIJKLMNOPQRSTUV and tok_live_5f3a9c2e7d1b",
        ]);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let run = repo.only_run();
    let planner = read(&run.join("logs/planner.log"));
    assert!(
        planner.contains("more bytes in the audit store]"),
        "the 10 MB line is cut in the log"
    );
    assert!(planner.len() < 1024 * 1024, "log size {}", planner.len());
    for entry in std::fs::read_dir(run.join("logs")).unwrap().flatten() {
        let body = read(&entry.path());
        assert!(
            !body.contains("sk-proj-ABCDEFGHIJKLMNOPQRSTUV"),
            "{:?}",
            entry.path()
        );
        assert!(
            !body.contains("tok_live_5f3a9c2e7d1b"),
            "{:?}",
            entry.path()
        );
    }
    assert!(
        planner.contains("[redacted:MY_SERVICE_TOKEN]") && planner.contains("sk-[redacted]"),
        "{planner}"
    );
}

#[test]
fn config_errors_name_file_line_and_column_and_exit_2() {
    let repo = TestRepo::new();
    std::fs::write(
        repo.root().join("orch.kdl"),
        "agent \"a\" {\n  plan-prompt \"x\"\n  depends-on \"ghost\"\n}\n",
    )
    .unwrap();
    let out = repo.demo("delay=1", &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("orch.kdl:1:1: agent `a` depends on `ghost`"),
        "{stderr}"
    );
    assert!(repo.run_dirs().is_empty(), "nothing runs on a bad config");

    std::fs::write(
        repo.root().join("orch.kdl"),
        "agent \"a\" {\n  plan-prompt \"x\n}\n",
    )
    .unwrap();
    let stderr = text(&repo.demo("delay=1", &[]).stderr);
    assert!(stderr.contains("orch.kdl:2:"), "{stderr}");

    let json = repo.root().join("agents.json");
    std::fs::write(&json, "{\"agents\": [ {\"id\": \"x\", } ]}").unwrap();
    let out = repo.demo("delay=1", &["--agents-config", json.to_str().unwrap()]);
    assert!(
        text(&out.stderr).contains("agents.json:1:"),
        "{}",
        text(&out.stderr)
    );

    let out = repo.demo("delay=1", &["--agents-config", "missing.kdl"]);
    assert!(
        text(&out.stderr).contains("failed to read agents config"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn seed_json_config_and_group_filter_are_honoured() {
    let repo = TestRepo::new();
    let config = repo.root().join("agents.out.json");
    std::fs::write(
        &config,
        r#"{"groups":[
            {"name":"alpha","agents":[{"id":"solo","role":"Solo","plan_prompt":"hi","follow_up_enabled":false}]},
            {"name":"beta","agents":[{"id":"other","role":"Other","plan_prompt":"hi","follow_up_enabled":false}]}]}"#,
    )
    .unwrap();
    let out = repo.demo("delay=1", &["--groups", "beta"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let timeline = repo.timeline();
    assert!(
        timeline.contains("group_started beta") && !timeline.contains("group_started alpha"),
        "{timeline}"
    );
    let out = repo.demo("delay=1", &["--groups", "gamma"]);
    assert!(
        text(&out.stderr)
            .contains("--groups names `gamma`, but the agents config has only: alpha, beta")
    );
}

#[test]
fn a_missing_codex_binary_is_a_clear_error_before_anything_runs() {
    let repo = TestRepo::new();
    let out = repo
        .launch()
        .env("PATH", "/nonexistent")
        .args([
            "--prompt",
            "Ship the MVP",
            "--backend",
            "codex",
            "--mux",
            "none",
            // No PATH, so no git either: the check of the backend is what this is about.
            "--isolation",
            "shared",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("`codex` was not found on PATH; install it or set ORCH_CODEX_BIN"),
        "{stderr}"
    );
    assert!(repo.run_dirs().is_empty());
}
