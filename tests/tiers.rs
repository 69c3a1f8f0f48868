//! Model tiers through the real `launch` binary with a fake `codex`: under `routing
//! "fast-first"` a blueprint agent works on the fast tier's model; when its gate fails
//! it moves to the strong tier's model on a new conversation that is given its
//! assignment and the failure, and succeeds there. Each tier's tokens are reported
//! apart (`--metrics`, `orch-audit show`, `orch-audit report`). Tiers with an endpoint
//! of their own (`base-url`, `key-env`) are served there, each with its own key, which no
//! record of the run holds: with a fake `codex`, and with the real Codex CLI acting for
//! the `openai` backend against scripted servers.

mod support;

use std::time::Duration;

use orch::agent::Usage;
use support::codex::{codex_bin, keep_tmp_out_of_codex_sandbox};
use support::model_server::{
    ModelServer, Recorded, Reply, Request, chat_text, responses_text, status,
};
use support::squad::{route_http, run_bounded};
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

/// The lines a fake agent wrote to `file`.
fn lines_of(file: &std::path::Path) -> Vec<String> {
    read(file).lines().map(str::to_owned).collect()
}

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
    let calls = lines_of(&state.join("calls.worker"));
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
    let calls = lines_of(&state.join("env.worker"));
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

/// The tiers of `each_tier_is_served_at_its_own_base_url_with_its_own_key_which_no_record_holds`: each at a
/// scripted server of its own, with a key whose variable does not look secret (so only
/// its registration as a tier key keeps it out of the records).
const ENDPOINT_TIERS_KDL: &str = r#"
tier "fast" backend="openai" model="fast-model" base-url="{fast}/v1" key-env="ORCH_TEST_FAST_CRED"
tier "strong" backend="openai" model="strong-model" base-url="{strong}/v1" key-env="ORCH_TEST_STRONG_CRED"
routing "fast-first"
"#;

const FAST_KEY: &str = "tierfast-7f3a9c21e5d0";
const STRONG_KEY: &str = "tierstrong-b84d02c6f1a9";
const MAIN_KEY: &str = "sk-main-run-0a1b2c3d4e5f";

/// The run's own endpoint: the core agents' chat completions; the builder answers the
/// blueprint.
fn core_script(req: &Request) -> Reply {
    match route_http(req) {
        Some(route) if route.agent == "builder" => chat_text(BLUEPRINT, Usage::default()),
        Some(route) => chat_text(&format!("{}: planned", route.agent), Usage::default()),
        None => status(404, None, "not_found_error", "not scripted"),
    }
}

/// A tier's endpoint: Codex's Responses requests for the worker, answered with text
/// that carries the key the request came with (as an error message might).
fn tier_script(req: &Request) -> Reply {
    if !req.path.ends_with("/responses") {
        return status(404, None, "not_found_error", "not scripted");
    }
    let key = req
        .header("authorization")
        .and_then(|auth| auth.strip_prefix("Bearer "))
        .unwrap_or("none");
    let usage = Usage {
        input_tokens: 100,
        output_tokens: 10,
        ..Usage::default()
    };
    responses_text("r", &format!("worker: done as {key}"), usage)
}

fn authorization(r: &Recorded) -> Option<&str> {
    r.headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str())
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files.extend(files_under(&path));
        } else if kind.is_file() {
            files.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    files
}

fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tier_is_served_at_its_own_base_url_with_its_own_key_which_no_record_holds() {
    let Some(codex) = codex_bin() else { return };
    let main = ModelServer::start(core_script).await;
    let fast = ModelServer::start(tier_script).await;
    let strong = ModelServer::start(tier_script).await;
    let repo = TestRepo::new();
    let kdl = ENDPOINT_TIERS_KDL
        .replace("{fast}", &fast.url())
        .replace("{strong}", &strong.url());
    commit_file(
        &repo.root(),
        "orch.kdl",
        &format!("{kdl}{PLANNER_AND_BUILDER_KDL}"),
    );
    keep_tmp_out_of_codex_sandbox(&repo.dir.path().join("home/.codex"));
    // Fails once, on the fast tier's work: the worker moves to the strong tier.
    let mark = repo.dir.path().join("gate-ran");
    let mut cmd = repo.launch();
    cmd.args([
        "--prompt",
        "Ship it",
        "--backend",
        "openai",
        "--mux",
        "none",
    ])
    .args(["--base-url", &format!("{}/v1", main.url())])
    .args(["--model", "main-model", "--notify", "none"])
    .args(["--session", "keyed", "--metrics"])
    .args([
        "--gate",
        "test -e \"$GATE_MARK\" || { touch \"$GATE_MARK\"; exit 1; }",
    ])
    .env("ORCH_CODEX_BIN", &codex)
    .env("GATE_MARK", &mark)
    .env("OPENAI_API_KEY", MAIN_KEY)
    .env("ORCH_TEST_FAST_CRED", FAST_KEY)
    .env("ORCH_TEST_STRONG_CRED", STRONG_KEY);
    let out = tokio::task::spawn_blocking(move || run_bounded(cmd, Duration::from_secs(240)))
        .await
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    // The core agents on the run's endpoint, with the run's key.
    let core = main.requests();
    assert!(!core.is_empty());
    for r in &core {
        let agent = route_http(&r.request()).map(|route| route.agent);
        assert!(
            matches!(agent.as_deref(), Some("planner" | "builder")),
            "{agent:?}"
        );
        assert_eq!(
            authorization(r),
            Some(format!("Bearer {MAIN_KEY}").as_str())
        );
    }
    // Each tier's turns at its own endpoint, with its own key and model; nothing of one
    // tier's key reaches another endpoint.
    for (server, key, model, other) in [
        (&fast, FAST_KEY, "fast-model", STRONG_KEY),
        (&strong, STRONG_KEY, "strong-model", FAST_KEY),
    ] {
        let requests = server.requests();
        let turns: Vec<&Recorded> = requests
            .iter()
            .filter(|r| r.path == "/v1/responses")
            .collect();
        assert!(!turns.is_empty(), "{model}: {requests:#?}");
        for r in &turns {
            assert_eq!(r.body["model"], model);
        }
        for r in &requests {
            if let Some(auth) = authorization(r) {
                assert_eq!(auth, format!("Bearer {key}"), "{model} {}", r.path);
            }
            assert!(
                !r.body.to_string().contains(other),
                "{model} saw the other key"
            );
        }
        assert!(turns.iter().all(|r| authorization(r).is_some()), "{model}");
    }
    for r in &core {
        let body = r.body.to_string();
        assert!(!body.contains(FAST_KEY) && !body.contains(STRONG_KEY));
    }
    let taken_over = strong
        .requests()
        .iter()
        .any(|r| r.request().last_user_text().contains("You take over"));
    assert!(taken_over, "the strong tier was not told it takes over");

    // The answers quoted each key, yet no record of the run holds one.
    for (path, bytes) in files_under(&repo.root().join(".orch")) {
        for key in [FAST_KEY, STRONG_KEY] {
            assert!(!holds(&bytes, key), "{} holds a tier key", path.display());
        }
    }
    let log = read(&repo.root().join(".orch/runs/keyed/logs/worker.log"));
    assert!(log.contains("[redacted:ORCH_TEST_FAST_CRED]"), "{log}");
    for key in [FAST_KEY, STRONG_KEY] {
        assert!(!stderr.contains(key) && !text(&out.stdout).contains(key));
    }
    // Each tier's turns are its own, on the tier's backend instance.
    let show = repo.audit(&["show", "keyed"]);
    assert!(
        show.contains("tier fast ") && show.contains("tier strong "),
        "{show}"
    );
    // The agent's backend is the tier's; its endpoint is not part of its name.
    assert!(show.contains("openai"), "{show}");
}
