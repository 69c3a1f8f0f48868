//! Secrets planted in the prompt of a real `launch` (and so in the demo agents' output,
//! which repeats the task) and in a secret-named environment variable never reach the
//! audit file, its WAL, any file under `.orch/`, the memory directory or the output, in
//! clear text: not while the run is paused, not after it stopped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};

use crate::repo::{TestRepo, read, text};
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

/// One secret of each class the redactor knows by its shape or its name, with what
/// must never be stored (the secret part) and what must be (the readable part).
const CLASSES: &[(&str, &str, &str)] = &[
    (
        "pem",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAplantedPemBody0123456789xyz\n-----END RSA PRIVATE KEY-----",
        "MIIEpAIBAAKCAQEAplantedPemBody0123456789xyz",
    ),
    (
        "aws by name",
        "aws_secret_access_key = Xq7plantedAwsByName0123456789/ABCDEFGHIJ",
        "Xq7plantedAwsByName0123456789/ABCDEFGHIJ",
    ),
    (
        "aws by shape",
        "AKIAPLANTEDAWS000001 and Yk2plantedAwsByShape+123456789abcdefghij",
        "Yk2plantedAwsByShape+123456789abcdefghij",
    ),
    ("password", "password=plantedPassw0rd", "plantedPassw0rd"),
    (
        "json api key",
        "{\"api_key\": \"plantedJsonApiKey42\"}",
        "plantedJsonApiKey42",
    ),
    ("short bearer", "Authorization: Bearer plShort9", "plShort9"),
    (
        "url password",
        "postgres://app:plantedUrlPass@db.local:5432/app",
        "plantedUrlPass",
    ),
    (
        "slack",
        "xoxb-1234567890-plantedSlackTok",
        "1234567890-plantedSlackTok",
    ),
    (
        "google",
        "AIzaSyPlantedGoogleKey0123456789abcdEFG",
        "SyPlantedGoogleKey0123456789abcdEFG",
    ),
    (
        "stripe",
        "sk_live_plantedStripeKey0123456789",
        "plantedStripeKey0123456789",
    ),
    (
        "npm",
        "npm_plantedNpmToken0123456789abcdefghijk",
        "plantedNpmToken0123456789abcdefghijk",
    ),
];

/// Every file under `dir`, as (path, bytes).
fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    files_under(dir, &mut files);
    files
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(&f).unwrap_or_default();
            (f, bytes)
        })
        .collect()
}

/// An agent (a stand-in `codex`) prints every class of secret in its events, in a line
/// that is not JSON and on stderr before it crashes; the prompt holds them too. None
/// reaches any file under `.orch/` (store, WAL, logs, turn files, `config.json`), nor
/// the terminal.
#[test]
fn every_secret_class_from_an_agent_is_absent_from_every_file_under_orch() {
    for (name, secret, hidden) in CLASSES {
        assert!(secret.contains(hidden), "{name}");
    }
    let repo = TestRepo::new();
    crate::hygiene::solo_squad(&repo);
    let all: Vec<&str> = CLASSES.iter().map(|(_, s, _)| *s).collect();
    let joined = all.join(" | ");
    let json_text = serde_json::to_string(&joined).unwrap();
    // Shell-quoted once: the script prints the texts as they are.
    let quoted = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let body = format!(
        r#"printf '%s\n' '{{"type":"thread.started","thread_id":"t-secrets"}}'
printf '%s\n' {message}
printf '%s\n' {command}
printf '%s\n' {raw}
printf '%s\n' {stderr} >&2
exit 3"#,
        message = quoted(&format!(
            r#"{{"type":"item.completed","item":{{"id":"m","type":"agent_message","text":{json_text}}}}}"#
        )),
        command = quoted(&format!(
            r#"{{"type":"item.completed","item":{{"id":"c","type":"command_execution","command":"env","aggregated_output":{json_text},"exit_code":0,"status":"completed"}}}}"#
        )),
        raw = quoted(&format!("plain output: {}", joined.replace('\n', " "))),
        stderr = quoted(&format!("fatal: {}", joined)),
    );
    let codex = crate::hygiene::fake_codex(&repo, &body);
    let prompt = format!("Deploy with {}", all.join(" ; "));
    let out = crate::hygiene::fake_codex_launch(&repo, &codex, &prompt)
        .output()
        .expect("launch runs");
    // The agent crashed (exit 3 without `turn.completed`): the run fails, loudly.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));

    let files = all_files(&repo.root().join(".orch"));
    let names: Vec<String> = files
        .iter()
        .map(|(f, _)| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in ["audit.db", "config.json", "solo.log", "timeline.log"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    for (name, _, hidden) in CLASSES {
        for (file, bytes) in &files {
            assert!(
                !contains(bytes, hidden),
                "{name}: `{hidden}` is in {} in clear text",
                file.display()
            );
        }
        assert!(!printed.contains(hidden), "{name}: printed: {printed}");
    }

    // The agent's output did reach the files, redacted: its log shows the message, the
    // command output, the raw line and the crash with its stderr.
    let log = read(&repo.only_run().join("logs/solo.log"));
    for marker in [
        "message  -----BEGIN RSA PRIVATE KEY-----[redacted]",
        "output   plain output: -----BEGIN RSA PRIVATE KEY-----[redacted]",
        "Authorization: Bearer [redacted]",
        "postgres://app:[redacted]@db.local",
        "fatal: -----BEGIN RSA PRIVATE KEY-----[redacted]",
    ] {
        assert!(log.contains(marker), "`{marker}` not in the log:\n{log}");
    }
    let db = repo_db(&repo);
    let stored: Vec<u8> = files
        .iter()
        .filter(|(f, _)| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("audit.db")
        })
        .flat_map(|(_, b)| b.clone())
        .collect();
    for marker in [
        "password=[redacted]",
        "sk_live_[redacted]",
        "npm_[redacted]",
    ] {
        assert!(contains(&stored, marker), "`{marker}` is not in the store");
    }
    let verify = orch_audit(&db, &["verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
}
