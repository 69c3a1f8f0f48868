//! Secrets planted in the prompt of a real `launch` (and so in the demo agents' output,
//! which repeats the task) and in a secret-named environment variable never reach the
//! audit file, its WAL, any file under `.orch/`, the memory directory or the output, in
//! clear text: not while the run is paused, not after it stopped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};

use crate::repo::{TestRepo, read};
use crate::support::*;

const ANTHROPIC_KEY: &str = "sk-ant-api03-PlantedAnthropicKey0123456789";
const OPENAI_KEY: &str = "sk-proj-PlantedOpenAIKey9876543210";
const BEARER: &str = "eyJhbGciOiJIUzI1NiJ9.plantedPayload.plantedSig";
const ENV_NAME: &str = "FOO_TOKEN";
const ENV_VALUE: &str = "foo-plain-value-8d2e1c4b";
const ALL: &[&str] = &[ANTHROPIC_KEY, OPENAI_KEY, BEARER, ENV_VALUE];

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else if path.is_file() {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Reads every file (the store, its -wal and -shm included) and checks no secret is
/// in it; returns the store's bytes (main file and WAL) for further checks.
fn assert_no_secret_in_files(dirs: &[PathBuf], db: &Path, when: &str) -> Vec<u8> {
    let mut files = Vec::new();
    for dir in dirs {
        files_under(dir, &mut files);
    }
    assert!(
        files.iter().any(|f| f == db),
        "{when}: the store is among the files checked"
    );
    let mut store = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_default();
        for secret in ALL {
            assert!(
                !contains(&bytes, secret),
                "{when}: `{secret}` is in {} in clear text",
                file.display()
            );
        }
        let name = file.file_name().unwrap().to_string_lossy();
        if name.starts_with("audit.db") {
            store.extend(bytes);
        }
    }
    store
}

#[test]
fn planted_secrets_never_reach_the_store_logs_or_run_files() {
    let repo = TestRepo::new();
    let memory = repo.root().join("memory");
    // The first line of the prompt is the task the demo agents repeat in their answers.
    let prompt = format!(
        "Ship the MVP with {ANTHROPIC_KEY} and {OPENAI_KEY}, send Authorization: Bearer {BEARER}, token {ENV_VALUE}\nMore context."
    );
    let child = demo_launch(
        &repo,
        "delay=15,events=5,gap=10,fail=frontend-ui:transient",
        &["--prompt", &prompt, "--stream"],
    )
    .env(ENV_NAME, ENV_VALUE)
    .env("CODEX_MEMORY_DIR", &memory)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut child = ChildGuard(child);
    let out_reader = LineReader::spawn(child.0.stdout.take().unwrap());
    let err_reader = LineReader::spawn(child.0.stderr.take().unwrap());
    assert!(
        wait_until(Duration::from_secs(30), || !repo.run_dirs().is_empty()),
        "no run directory"
    );
    let timeline = repo.only_run().join("logs/timeline.log");
    assert!(
        wait_until(Duration::from_secs(60), || read(&timeline)
            .contains("turn_started backend-api")),
        "the dynamic wave never started"
    );
    let db = repo_db(&repo);
    let dirs = [repo.root().join(".orch"), memory.clone()];

    // Paused mid-run: the WAL holds uncheckpointed pages.
    kill(child.pid(), Signal::SIGINT).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || read(&timeline)
            .contains("run_paused #1")),
        "no pause"
    );
    assert_no_secret_in_files(&dirs, &db, "while paused");

    kill(child.pid(), Signal::SIGINT).unwrap();
    let status = child
        .wait_exit(Duration::from_secs(60))
        .expect("launch did not stop");
    assert_eq!(status.code(), Some(130));
    let store = assert_no_secret_in_files(&dirs, &db, "after the stop");

    // The secrets were there to be redacted: their markers are stored instead.
    for marker in [
        "sk-[redacted]",
        "Bearer [redacted]",
        &format!("[redacted:{ENV_NAME}]"),
    ] {
        assert!(contains(&store, marker), "`{marker}` is not in the store");
    }
    // Where each kind of record lives: the runs row, turn files, memory artifacts.
    let session = only_session(&repo);
    let runs = json(&orch_audit(&db, &["runs", "--json"]));
    let stored_prompt = runs[0]["prompt"].as_str().unwrap();
    assert!(
        stored_prompt.contains(&format!("[redacted:{ENV_NAME}]")),
        "{stored_prompt}"
    );
    let plan = orch_audit(
        &db,
        &[
            "cat",
            &format!("/runs/{session}/agents/planner/001-plan.json"),
        ],
    );
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert!(
        plan["response"]
            .as_str()
            .unwrap()
            .contains("Bearer [redacted]"),
        "the agent's output repeated the secrets: {plan}"
    );
    let mirrored = std::fs::read_dir(&memory).unwrap().count();
    assert!(mirrored >= 6, "memory artifacts mirrored ({mirrored})");
    let verify = orch_audit(&db, &["verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));

    // Nor on the terminal (`--stream` prints every event).
    let mut printed = String::new();
    for reader in [&out_reader, &err_reader] {
        while let Some(line) = reader.next_within(Duration::from_secs(20), "launch output") {
            printed.push_str(&line);
            printed.push('\n');
        }
    }
    assert!(
        printed.contains("Bearer [redacted]"),
        "--stream printed the redacted task: {printed}"
    );
    for secret in ALL {
        assert!(!printed.contains(secret), "`{secret}` printed");
    }
}
