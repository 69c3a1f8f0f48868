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
}
