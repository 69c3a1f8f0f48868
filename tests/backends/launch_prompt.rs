//! A 1 MiB agent prompt through the real `launch` binary: the stand-in `codex`
//! receives it whole on stdin, and its command line (what `ps` shows) holds none of it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::support::TestRepo;
use crate::support::squad::run_bounded;

/// Records its stdin and command line per process, then answers with a whole turn.
const RECORDING_CODEX: &str = r#"#!/bin/sh
cat > "$REC/stdin.$$"
tr '\0' ' ' < /proc/$$/cmdline > "$REC/cmdline.$$"
cat "$FIXTURE"
"#;

fn files(dir: &Path, prefix: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    out.sort_by_key(Vec::len);
    out
}

#[test]
fn a_mebibyte_plan_prompt_reaches_the_agent_on_stdin_and_not_in_its_arguments() {
    let repo = TestRepo::new();
    let sentence = "PROMPT-SECRET-launch: outline every step of the plan in order. ";
    let plan_prompt = sentence.repeat((1 << 20) / sentence.len() + 1);
    std::fs::write(
        repo.root().join("orch.kdl"),
        format!(
            "agent \"solo\" {{\n    role \"Solo\"\n    plan-prompt \"{plan_prompt}\"\n    follow-up-prompt \"Write the final plan.\"\n}}\n"
        ),
    )
    .unwrap();
    let codex = repo.dir.path().join("codex");
    std::fs::write(&codex, RECORDING_CODEX).unwrap();
    std::fs::set_permissions(&codex, std::fs::Permissions::from_mode(0o755)).unwrap();
    let rec = repo.dir.path().join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/codex/completed.jsonl");
    let mut cmd = repo.launch();
    cmd.args(["--prompt", "Ship it", "--backend", "codex", "--mux", "none"])
        .env("ORCH_CODEX_BIN", &codex)
        .env("REC", &rec)
        .env("FIXTURE", &fixture)
        .stdin(Stdio::null());
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "launch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdins = files(&rec, "stdin.");
    assert_eq!(stdins.len(), 2, "expected a plan and a follow-up turn");
    let plan = String::from_utf8(stdins[1].clone()).unwrap();
    assert!(
        plan.len() > 1 << 20,
        "the plan prompt arrived cut: {} bytes",
        plan.len()
    );
    // The prompt builder trims the text of the config.
    assert!(
        plan.contains(plan_prompt.trim_end()),
        "the plan prompt arrived altered"
    );
    for cmdline in files(&rec, "cmdline.") {
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(cmdline.contains("exec"), "{cmdline}");
        assert!(
            !cmdline.contains("PROMPT-SECRET"),
            "the prompt is in argv: {cmdline}"
        );
    }
}
