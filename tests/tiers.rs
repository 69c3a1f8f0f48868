//! Model tiers through the real `launch` binary with a fake `codex`: under `routing
//! "fast-first"` a blueprint agent works on the fast tier's model; when its gate fails
//! it moves to the strong tier's model on a new conversation that is given its
//! assignment and the failure, and succeeds there. Each tier's tokens are reported
//! apart (`--metrics`, `orch-audit show`).

mod support;

use support::{PLANNER_AND_BUILDER_KDL, TestRepo, commit_file, git, read, scripted_codex, text};

/// The body of a `scripted_codex` (whose start records every call and prompt by
/// agent) that writes the model it was given (`-m`) into
/// `<agent>.txt` in its working directory, and answers; the builder answers with the
/// blueprint in `$STATE/blueprint`.
const CODEX: &str = r#"model=$(echo "$*" | sed -n 's/.* -m \([^ ]*\).*/\1/p')
echo "{\"type\":\"thread.started\",\"thread_id\":\"t-$agent-$n\"}"
if [ "$agent" = builder ]; then
  answer=$(cat "$STATE/blueprint")
else
  echo "made by $model" > "$agent.txt"
  answer="\"done: $agent\""
fi
printf '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":%s}}\n' "$answer"
echo '{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":0,"output_tokens":10}}'
"#;

/// Tiers and routing for the one group, before its planner and builder.
const TIERS_KDL: &str = r#"
tier "fast" model="fast-model"
tier "strong" model="strong-model"
routing "fast-first"
"#;

const BLUEPRINT: &str = "```json\n{\"agents\":[{\"id\":\"worker\",\"role\":\"Worker\",\"prompt\":\"Write worker.txt.\",\"dependsOn\":[]}]}\n```";

#[test]
fn fast_first_moves_an_agent_whose_gate_fails_to_the_strong_tier_and_reports_each_tier() {
    let repo = TestRepo::new();
    commit_file(
        &repo.root(),
        "orch.kdl",
        &format!("{TIERS_KDL}{PLANNER_AND_BUILDER_KDL}"),
    );
    let (codex, state) = scripted_codex(&repo, CODEX, BLUEPRINT);
    let out = repo
        .launch()
        .args(["--prompt", "Ship it", "--backend", "codex", "--mux", "none"])
        .args(["--notify", "none", "--session", "tiered", "--metrics"])
        .args(["--gate", "grep -q strong-model worker.txt"])
        .env("ORCH_CODEX_BIN", &codex)
        .env("STATE", &state)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    // The worker's turns on the fast tier, then one on the strong tier: a new
    // conversation (not `resume`), told its assignment and why it took over.
    let calls: Vec<String> = read(&state.join("calls.worker"))
        .lines()
        .map(str::to_owned)
        .collect();
    let (last, before) = calls.split_last().unwrap();
    assert!(!before.is_empty(), "{calls:?}");
    for call in before {
        assert!(call.contains("-m fast-model"), "{calls:?}");
    }
    assert!(last.contains("-m strong-model"), "{calls:?}");
    assert!(!last.contains("resume"), "{calls:?}");
    let prompt = read(&state.join(format!("prompt.worker.{}", calls.len())));
    assert!(
        prompt.contains("Write worker.txt.")
            && prompt.contains("You take over")
            && prompt.contains("grep -q strong-model worker.txt"),
        "{prompt}"
    );
    // Core agents keep the run's model.
    assert!(!read(&state.join("calls.planner")).contains(" -m "));
    assert_eq!(
        git(&repo.root(), &["show", "orch/tiered:worker.txt"]).trim(),
        "made by strong-model"
    );
    let timeline = read(&repo.root().join(".orch/runs/tiered/logs/timeline.log"));
    assert!(
        timeline.contains(
            "`worker` moves from the fast tier (fast-model) to the strong tier (strong-model)"
        ),
        "{timeline}"
    );

    // Each tier's tokens apart: --metrics and orch-audit show (the fast tier's plan and
    // follow-up turns share a thread, whose tokens Codex counts cumulatively).
    assert!(
        stderr.contains("(tier strong)") && stderr.contains("(tier fast)"),
        "{stderr}"
    );
    let show = repo.audit(&["show", "tiered"]);
    assert!(
        show.contains("tier fast   2 turn(s)  tokens in 100 out 10"),
        "{show}"
    );
    assert!(
        show.contains("tier strong 1 turn(s)  tokens in 100 out 10"),
        "{show}"
    );
    // And in the HTML report.
    let page = repo.dir.path().join("report.html");
    repo.audit(&["report", "tiered", "--out", page.to_str().unwrap()]);
    let page = read(&page);
    assert!(page.contains("<h2>Model tiers</h2>"), "{page}");
    assert!(
        page.contains("<tr><td>strong</td><td class=\"num\">1</td><td class=\"num\">100</td><td class=\"num\">10</td>"),
        "{page}"
    );
    assert!(
        page.contains("<tr><td>fast</td><td class=\"num\">2</td><td class=\"num\">100</td><td class=\"num\">10</td>"),
        "{page}"
    );
}

/// A `scripted_codex` body that records, per call, the base URL of the model provider
/// it was given (`-c model_providers…`) and the key in that provider's variable, and
/// says the key in its answer (which the run must redact); `worker`'s gate fails until
/// it runs against the strong tier's URL (`strong.txt`).
const ENDPOINT_CODEX: &str = r#"url=$(printf '%s' "$*" | sed -n 's/.*base_url = "\([^"]*\)".*/\1/p')
echo "${url:-none} ${ORCH_TIER_API_KEY:-none}" >> "$STATE/env.$agent"
echo "{\"type\":\"thread.started\",\"thread_id\":\"t-$agent-$n\"}"
if [ "$agent" = builder ]; then
  answer=$(cat "$STATE/blueprint")
else
  case "$url" in *strong*) touch strong.txt;; esac
  answer="\"done with key ${ORCH_TIER_API_KEY:-none}\""
fi
printf '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":%s}}\n' "$answer"
echo '{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":0,"output_tokens":10}}'
"#;

#[test]
fn each_tier_reaches_its_own_base_url_with_its_own_key_and_the_keys_stay_out_of_the_run() {
    let repo = TestRepo::new();
    let fast_key = "fast-9d1f1c0e7a5b4c3d";
    let strong_key = "strong-4e2a8b6c0d9f1e3a";
    commit_file(
        &repo.root(),
        "orch.kdl",
        &format!(
            "{}{PLANNER_AND_BUILDER_KDL}",
            r#"
tier "fast" model="fast-model" base-url="http://127.0.0.1:9/fast/v1" key-env="FASTPASS"
tier "strong" model="strong-model" base-url="http://127.0.0.1:9/strong/v1" key-env="STRONGPASS"
routing "fast-first"
"#
        ),
    );
    let (codex, state) = scripted_codex(&repo, ENDPOINT_CODEX, BLUEPRINT);
    let launch = |extra: &[(&str, &str)]| {
        let mut cmd = repo.launch();
        cmd.args(["--prompt", "Ship it", "--backend", "codex", "--mux", "none"])
            .args(["--notify", "none", "--session", "endpoints", "--metrics"])
            .args(["--gate", "test -f strong.txt"])
            .env("ORCH_CODEX_BIN", &codex)
            .env("STATE", &state)
            .env_remove("ORCH_TIER_API_KEY");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };

    // A key-env that is not set is refused before anything runs, naming the variable.
    let out = launch(&[("FASTPASS", fast_key)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("STRONGPASS"),
        "{}",
        text(&out.stderr)
    );
    assert!(!state.join("env.planner").exists());

    let out = launch(&[("FASTPASS", fast_key), ("STRONGPASS", strong_key)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The worker's fast-tier turns went to the fast endpoint with the fast key, its
    // strong-tier turn to the strong one; core agents to neither.
    let calls: Vec<String> = read(&state.join("env.worker"))
        .lines()
        .map(str::to_owned)
        .collect();
    let (last, before) = calls.split_last().unwrap();
    assert!(!before.is_empty(), "{calls:?}");
    for call in before {
        assert_eq!(
            call,
            &format!("http://127.0.0.1:9/fast/v1 {fast_key}"),
            "{calls:?}"
        );
    }
    assert_eq!(
        last,
        &format!("http://127.0.0.1:9/strong/v1 {strong_key}"),
        "{calls:?}"
    );
    assert_eq!(
        read(&state.join("env.planner")).lines().next(),
        Some("none none")
    );
    // The keys (named FASTPASS and STRONGPASS, which look like no secret) reach no file
    // of the run, no log and not the audit store.
    let mut leaks = Vec::new();
    let mut stack = vec![repo.root().join(".orch")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                for key in [fast_key, strong_key] {
                    if bytes.windows(key.len()).any(|w| w == key.as_bytes()) {
                        leaks.push(path.display().to_string());
                    }
                }
            }
        }
    }
    assert!(leaks.is_empty(), "keys in {leaks:?}");
    let log = read(&repo.root().join(".orch/runs/endpoints/logs/worker.log"));
    assert!(log.contains("[redacted:FASTPASS]"), "{log}");
}
