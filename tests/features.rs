//! The features backlog through the real `launch` binary with a fake `codex`: three
//! features of two categories on two tracks (`tracks` in orch.kdl). Each feature is an
//! agent in its own worktree, checked by the gate and by a reviewer against its steps;
//! one feature of a track runs at a time. Each ends passed or failed with its attempts,
//! written into the features file on the run branch (the user's file untouched). After
//! `launch merge`, a second run starts only the feature still to do.

mod support;

use support::{TestRepo, commit_file, git, read, scripted_codex, text, timeline_events, user_side};

/// The body of a `scripted_codex`. A reviewer's turn (its prompt says "You review")
/// passes the work; a feature agent's turn writes `<agent>.txt`, and the `api-add`
/// agent also writes `broken.txt` (which fails the gate) until `$STATE/fixed` exists.
/// Fix turns name no agent: the thread they resume does.
const CODEX: &str = r#"case "$*" in *t-feature-*) agent=$(echo "$*" | sed -n 's/.*t-\(feature-[a-z0-9-]*\).*/\1/p');; esac
if printf '%s' "$prompt" | grep -q 'You review the work'; then
  answer='"{\"verdict\":\"pass\",\"points\":[{\"point\":\"steps\",\"pass\":true,\"note\":\"\"}]}"'
  echo '{"type":"thread.started","thread_id":"t-reviewer"}'
else
  echo "{\"type\":\"thread.started\",\"thread_id\":\"t-$agent\"}"
  echo "work of $agent" >> "$agent.txt"
  if [ "$agent" = feature-api-add ] && [ ! -f "$STATE/fixed" ]; then echo broken > broken.txt; fi
  answer="\"done: $agent\""
fi
printf '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":%s}}\n' "$answer"
echo '{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"output_tokens":5}}'
"#;

const FEATURES: &str = r#"{"project": "shop", "features": [
  {"id": "api-list", "category": "api", "name": "List items", "description": "GET /items lists the items.", "steps": ["feature-api-list.txt exists", "it names the agent"], "status": "open"},
  {"id": "api-add", "category": "api", "name": "Add item", "steps": ["no broken.txt"], "status": "open"},
  {"id": "ui-cart", "category": "ui", "name": "Cart page", "steps": ["feature-ui-cart.txt exists"], "status": "open", "owner": "ana"}
]}
"#;

/// Settings only: the built-in squad is kept (and does not run under --features).
const ORCH_KDL: &str = r#"
tracks {
    track "backend" categories="api"
    track "frontend" categories="ui"
}
gate "test ! -f broken.txt" max-attempts=2
"#;

/// `launch --features features.json` on the fake `codex`, not yet started.
fn features_launch(
    repo: &TestRepo,
    session: &str,
    codex: &std::path::Path,
    state: &std::path::Path,
) -> std::process::Command {
    let mut cmd = repo.launch();
    cmd.args([
        "--features",
        "features.json",
        "--backend",
        "codex",
        "--mux",
        "none",
    ])
    .args(["--notify", "none", "--session", session])
    .env("ORCH_CODEX_BIN", codex)
    .env("STATE", state);
    cmd
}

/// The same, started, its output discarded.
fn spawn_run(
    repo: &TestRepo,
    session: &str,
    codex: &std::path::Path,
    state: &std::path::Path,
) -> std::process::Child {
    features_launch(repo, session, codex, state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn features_at(root: &std::path::Path, rev: &str) -> serde_json::Value {
    serde_json::from_str(&git(root, &["show", &format!("{rev}:features.json")])).unwrap()
}

fn feature<'a>(file: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    file["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no feature {id} in {file}"))
}

#[test]
fn a_backlog_runs_on_tracks_records_each_feature_and_a_second_run_does_what_is_left() {
    let repo = TestRepo::new();
    let root = repo.root();
    commit_file(&root, "orch.kdl", ORCH_KDL);
    commit_file(&root, "features.json", FEATURES);
    let before = user_side(&root);
    let (codex, state) = scripted_codex(&repo, CODEX, "");
    let launch = |session: &str| {
        features_launch(&repo, session, &codex, &state)
            .output()
            .unwrap()
    };

    let out = launch("backlog1");
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed feature fails the run: {stderr}"
    );
    assert_eq!(
        user_side(&root),
        before,
        "the user's repository is untouched"
    );
    assert!(read(&root.join("features.json")) == FEATURES);

    // No core agent ran; each feature's agent did, on its track.
    assert!(!state.join("calls.planner").exists());
    let timeline = read(&root.join(".orch/runs/backlog1/logs/timeline.log"));
    assert!(
        timeline.contains("3 feature(s) to do of 3 on 2 track(s): backend, frontend"),
        "{timeline}"
    );
    // One feature of a track at a time: `api-add` starts after `api-list` is done.
    let events = timeline_events(&timeline);
    let position = |event: &str, subject: &str| {
        events
            .iter()
            .position(|(_, e, s)| e == event && s == subject)
            .unwrap_or_else(|| panic!("no {event} {subject}: {timeline}"))
    };
    assert!(
        position("agent_finished", "feature-api-list")
            < position("agent_started", "feature-api-add"),
        "{timeline}"
    );
    // The tracks run side by side: the ui feature starts before the api track is done.
    assert!(
        position("agent_started", "feature-ui-cart") < position("agent_started", "feature-api-add"),
        "{timeline}"
    );

    // The reviewer checked the feature's steps, as points.
    let prompts: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("prompt."))
        .map(|e| read(&e.path()))
        .collect();
    assert!(
        prompts.iter().any(
            |p| p.contains("You review the work of agent `feature-api-list`")
                && p.contains("1. feature-api-list.txt exists\n2. it names the agent")
        ),
        "{prompts:#?}"
    );
    // The assignment is the feature's.
    let assignment = read(&state.join("prompt.feature-api-list.1"));
    assert!(
        assignment.contains("Implement feature `api-list` (api): List items")
            && assignment.contains("GET /items lists the items."),
        "{assignment}"
    );

    // Each feature ends passed or failed with its attempts, on the run branch.
    let file = features_at(&root, "orch/backlog1");
    assert_eq!(feature(&file, "api-list")["status"], "passed");
    assert_eq!(feature(&file, "api-list")["attempts"], 1);
    assert_eq!(feature(&file, "ui-cart")["status"], "passed");
    assert_eq!(
        feature(&file, "ui-cart")["owner"],
        "ana",
        "other fields are kept"
    );
    assert_eq!(feature(&file, "api-add")["status"], "failed");
    assert_eq!(
        feature(&file, "api-add")["attempts"],
        2,
        "its try and one gate fix"
    );
    assert_eq!(file["project"], "shop");
    assert!(
        timeline.contains(
            "feature_updated feature-api-add feature=api-add track=backend status=failed attempts=2"
        ),
        "{timeline}"
    );
    let show = repo.audit(&["show", "backlog1"]);
    assert!(
        show.contains("api-add                  backend    failed    2 attempt(s)  gate `test ! -f broken.txt` still fails"),
        "{show}"
    );
    assert!(
        show.contains("ui-cart                  frontend   passed    1 attempt(s)"),
        "{show}"
    );
    let page = repo.dir.path().join("report.html");
    repo.audit(&["report", "backlog1", "--out", page.to_str().unwrap()]);
    let page = read(&page);
    assert!(
        page.contains("<tr><td>api-add</td><td><a href=\"#agent-feature-api-add\">feature-api-add</a></td><td>backend</td><td class=\"status-failed\">failed</td><td class=\"num\">2</td><td>gate `test ! -f broken.txt` still fails"),
        "{page}"
    );
    // The passed features' work is on the run branch; the failed one's is not.
    git(
        &root,
        &["cat-file", "-e", "orch/backlog1:feature-api-list.txt"],
    );
    git(
        &root,
        &["cat-file", "-e", "orch/backlog1:feature-ui-cart.txt"],
    );
    assert!(!git(&root, &["ls-tree", "--name-only", "orch/backlog1"]).contains("broken.txt"));

    // The user takes the run's work; the next run starts only what is still to do.
    let merged = repo.launch().args(["merge", "backlog1"]).output().unwrap();
    assert!(merged.status.success(), "{}", text(&merged.stderr));
    let calls_before = read(&state.join("calls.feature-api-list"));
    std::fs::write(state.join("fixed"), "").unwrap();
    let out = launch("backlog2");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let timeline = read(&root.join(".orch/runs/backlog2/logs/timeline.log"));
    assert!(
        timeline.contains("1 feature(s) to do of 3 on 1 track(s): backend"),
        "{timeline}"
    );
    assert_eq!(read(&state.join("calls.feature-api-list")), calls_before);
    assert!(
        !timeline.contains("agent_started feature-ui-cart"),
        "{timeline}"
    );
    let file = features_at(&root, "orch/backlog2");
    assert_eq!(feature(&file, "api-add")["status"], "passed");
    assert_eq!(
        feature(&file, "api-add")["attempts"],
        3,
        "two earlier attempts and this one"
    );
    assert_eq!(feature(&file, "api-list")["status"], "passed");

    // With nothing left, a third run is refused and says why.
    let merged = repo.launch().args(["merge", "backlog2"]).output().unwrap();
    assert!(merged.status.success(), "{}", text(&merged.stderr));
    let out = launch("backlog3");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("all 3 feature(s) have passed"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_malformed_backlog_is_refused_before_anything_runs() {
    let repo = TestRepo::new();
    let root = repo.root();
    for (content, expected) in [
        ("{\"features\": 3}", "`features` must be an array"),
        (
            "[{\"id\": \"../x\", \"name\": \"X\"}, {\"id\": \"x\", \"name\": \"Y\"}]",
            "both give agent `feature-x`",
        ),
        (
            "[{\"id\": \"a\", \"name\": \"A\", \"status\": \"done\"}]",
            "unknown status `done`",
        ),
    ] {
        std::fs::write(root.join("features.json"), content).unwrap();
        let out = repo
            .launch()
            .args([
                "--features",
                "features.json",
                "--backend",
                "demo",
                "--mux",
                "none",
            ])
            .args(["--notify", "none"])
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{content}: {stderr}");
    }
    assert!(repo.run_dirs().is_empty(), "no run started");
}

/// A `scripted_codex` body whose feature agent waits for `$STATE/go` on its first turn;
/// reviewers pass.
const WAITING_CODEX: &str = r#"if printf '%s' "$prompt" | grep -q 'You review the work'; then
  answer='"{\"verdict\":\"pass\",\"points\":[{\"point\":\"steps\",\"pass\":true,\"note\":\"\"}]}"'
else
  i=0; while [ ! -f "$STATE/go" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
  echo "work" > "$agent.txt"
  answer='"done"'
fi
echo '{"type":"thread.started","thread_id":"t-one"}'
printf '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":%s}}\n' "$answer"
echo '{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"output_tokens":5}}'
"#;

#[test]
fn a_features_file_edited_mid_run_is_named_and_the_run_keeps_its_own_steps() {
    use std::time::Duration;
    let repo = TestRepo::new();
    let root = repo.root();
    let started = r#"[{"id": "one", "name": "One", "steps": ["the first step"]}]"#;
    std::fs::write(root.join("features.json"), started).unwrap();
    let (codex, state) = scripted_codex(&repo, WAITING_CODEX, "");
    let mut run = spawn_run(&repo, "edited", &codex, &state);
    let timeline = root.join(".orch/runs/edited/logs/timeline.log");
    support::wait_for(
        "the feature's agent to start",
        Duration::from_secs(60),
        || read(&timeline).contains("agent_started feature-one"),
    );
    std::fs::write(
        root.join("features.json"),
        r#"[{"id": "one", "name": "One", "steps": ["a new step"]}, {"id": "two", "name": "Two"}]"#,
    )
    .unwrap();
    support::wait_for("the change to be named", Duration::from_secs(60), || {
        read(&timeline).contains("changed while the run goes on")
    });
    std::fs::write(state.join("go"), "").unwrap();
    let status = run.wait().unwrap();
    let timeline = read(&timeline);
    assert!(status.success(), "{timeline}");
    assert!(
        timeline.contains("features changed `one`; added `two`. This run keeps the features and steps it started with"),
        "{timeline}"
    );
    // The reviewer checked the step the run started with; the run branch's file says so.
    let reviewed = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| read(&e.path()))
        .find(|p| p.contains("You review the work"))
        .expect("a review prompt");
    assert!(
        reviewed.contains("1. the first step") && !reviewed.contains("a new step"),
        "{reviewed}"
    );
    let file = git(&root, &["show", "orch/edited:features.json"]);
    assert!(
        file.contains("the first step") && file.contains("\"passed\""),
        "{file}"
    );
}

/// A `scripted_codex` body: `feature-b`'s turns wait for `$STATE/go`; reviewers pass.
const BLOCKING_CODEX: &str = r#"case "$*" in *t-feature-*) agent=$(echo "$*" | sed -n 's/.*t-\(feature-[a-z0-9-]*\).*/\1/p');; esac
if printf '%s' "$prompt" | grep -q 'You review the work'; then
  answer='"{\"verdict\":\"pass\",\"points\":[{\"point\":\"steps\",\"pass\":true,\"note\":\"\"}]}"'
  echo '{"type":"thread.started","thread_id":"t-reviewer"}'
else
  echo "{\"type\":\"thread.started\",\"thread_id\":\"t-$agent\"}"
  if [ "$agent" = feature-b ]; then
    i=0; while [ ! -f "$STATE/go" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
  fi
  echo "work of $agent" >> "$agent.txt"
  answer="\"done: $agent\""
fi
printf '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":%s}}\n' "$answer"
echo '{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"output_tokens":5}}'
"#;

#[test]
fn a_killed_backlog_run_resumes_with_what_it_had_not_finished() {
    use std::time::Duration;
    let repo = TestRepo::new();
    let root = repo.root();
    commit_file(
        &root,
        "features.json",
        r#"[{"id": "a", "category": "x", "name": "A", "steps": ["a"]},
 {"id": "b", "category": "x", "name": "B", "steps": ["b"]},
 {"id": "c", "category": "y", "name": "C", "steps": ["c"]}]
"#,
    );
    let (codex, state) = scripted_codex(&repo, BLOCKING_CODEX, "");
    let mut run = spawn_run(&repo, "killed", &codex, &state);
    let timeline = root.join(".orch/runs/killed/logs/timeline.log");
    support::wait_for(
        "a and c to pass, b to be in its turn",
        Duration::from_secs(60),
        || {
            let t = read(&timeline);
            t.contains("feature=a track=x status=passed")
                && t.contains("feature=c track=y status=passed")
                && state.join("calls.feature-b").exists()
        },
    );
    run.kill().unwrap();
    run.wait().unwrap();
    let calls_a = read(&state.join("calls.feature-a"));
    std::fs::write(state.join("go"), "").unwrap();
    let out = repo
        .launch()
        .args(["resume", "killed", "--mux", "none", "--notify", "none"])
        .env("ORCH_CODEX_BIN", &codex)
        .env("STATE", &state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        read(&state.join("calls.feature-a")),
        calls_a,
        "a finished: not run again"
    );
    let file = features_at(&root, "orch/killed");
    let file = serde_json::json!({"features": file});
    for id in ["a", "b", "c"] {
        assert_eq!(feature(&file, id)["status"], "passed", "{file}");
        assert_eq!(feature(&file, id)["attempts"], 1, "{file}");
    }
    let verify = repo.audit(&["verify"]);
    assert!(verify.contains("ok"), "{verify}");
}
