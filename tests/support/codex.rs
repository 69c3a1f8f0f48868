//! Running the real Codex CLI in tests: finding it, and a private CODEX_HOME/HOME/XDG
//! tree that points it at a scripted model server.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::model_server::{ModelServer, Reply, Request, responses_call};
use orch::agent::Usage;

/// An apply_patch edit of the README that `git_repo` writes (old line → new line).
pub const PATCH: &str = "apply_patch <<'PATCH'\n*** Begin Patch\n*** Update File: README.md\n@@\n-old line\n+new line from codex\n*** End Patch\nPATCH\n";

/// The codex binary, or `None` (after saying why) when it is not installed.
pub fn codex_bin() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("ORCH_CODEX_BIN").map(PathBuf::from),
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/orch-tools/npm/node_modules/.bin/codex")),
    ];
    if let Some(found) = candidates.into_iter().flatten().find(|p| p.is_file()) {
        return Some(found);
    }
    if std::env::var("ORCH_TEST_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!(
            "the codex CLI is required (ORCH_TEST_REQUIRE_TOOLS=1) but neither ORCH_CODEX_BIN nor ~/.cache/orch-tools has it"
        );
    }
    eprintln!(
        "SKIP: codex CLI not installed (set ORCH_CODEX_BIN or run .ci/run to install @openai/codex@0.169.0)"
    );
    None
}

/// The env var holding the scripted provider's key, and its value.
pub const SCRIPTED_KEY: (&str, &str) = ("ORCH_SCRIPTED_API_KEY", "sk-scripted-test-key");

/// Writes `codex_home/config.toml`: the scripted server as the only model provider.
/// Settings appended to the file land in the provider's table. `/tmp` is kept out of
/// the sandbox's writable roots: Codex leaves an empty `.git` directory (a read-only
/// mount point) in each of them, and a test must not change `/tmp`.
pub fn write_codex_config(codex_home: &Path, server: &ModelServer) {
    std::fs::create_dir_all(codex_home).unwrap();
    let config = format!(
        "model = \"orch-test-model\"\nmodel_provider = \"scripted\"\n\n[sandbox_workspace_write]\nexclude_slash_tmp = true\nexclude_tmpdir_env_var = true\n\n[model_providers.scripted]\nname = \"scripted\"\nbase_url = \"{}/v1\"\nwire_api = \"responses\"\nenv_key = \"{}\"\n",
        server.url(),
        SCRIPTED_KEY.0
    );
    std::fs::write(codex_home.join("config.toml"), config).unwrap();
}

/// A `config.toml` in `codex_home` (`$HOME/.codex` of a run's agents) that keeps /tmp
/// out of the sandbox's writable roots: Codex leaves an empty `.git` in each of them.
pub fn keep_tmp_out_of_codex_sandbox(codex_home: &Path) {
    std::fs::create_dir_all(codex_home).unwrap();
    std::fs::write(
        codex_home.join("config.toml"),
        "[sandbox_workspace_write]\nexclude_slash_tmp = true\nexclude_tmpdir_env_var = true\n",
    )
    .unwrap();
}

/// A private CODEX_HOME/HOME/XDG tree pointing Codex at `server`, and the env for it.
pub fn codex_env(root: &Path, server: &ModelServer) -> Vec<(OsString, OsString)> {
    let codex_home = root.join("codex-home");
    write_codex_config(&codex_home, server);
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |k: &str, v: &Path| env.push((k.into(), v.as_os_str().to_owned()));
    set("HOME", &root.join("home"));
    set("CODEX_HOME", &codex_home);
    for (var, dir) in [
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_STATE_HOME", "state"),
    ] {
        set(var, &root.join("xdg").join(dir));
    }
    env.push((
        "PATH".into(),
        std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
    ));
    env.push((SCRIPTED_KEY.0.into(), SCRIPTED_KEY.1.into()));
    env
}

/// A git repository whose committed README is `# demo` / `old line` (agents' worktrees
/// start from the commit).
pub fn git_repo(dir: &Path) {
    std::fs::write(dir.join("README.md"), "# demo\nold line\n").unwrap();
    for args in [
        &["init", "-q", "."][..],
        &["add", "README.md"],
        &[
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@localhost",
            "commit",
            "-q",
            "-m",
            "demo readme",
        ],
    ] {
        let status = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }
}

/// A stand-in `codex` that records its arguments (NUL-separated, one file per run in
/// `argv_dir`) and then runs the real CLI.
pub fn recording_codex(dir: &Path, real: &Path, argv_dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(argv_dir).unwrap();
    let path = dir.join("codex");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\0' \"$@\" > \"$(mktemp '{}/run.XXXXXX')\"\nexec '{}' \"$@\"\n",
        argv_dir.display(),
        real.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The argument lists `recording_codex` saw.
pub fn recorded_argvs(argv_dir: &Path) -> Vec<Vec<String>> {
    let mut runs: Vec<Vec<String>> = std::fs::read_dir(argv_dir)
        .unwrap()
        .map(|entry| {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            bytes
                .split(|b| *b == 0)
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect::<Vec<_>>()
        })
        .map(|mut args| {
            args.pop(); // after the last NUL
            args
        })
        .collect();
    runs.sort();
    runs
}

/// Calls whichever shell tool this Codex version offers.
pub fn shell_call(req: &Request, id: &str, cmd: &str, usage: Usage) -> Reply {
    let tools = req.tool_names();
    let (name, args): (&str, Value) = if tools.iter().any(|t| t == "exec_command") {
        ("exec_command", json!({"cmd": cmd}))
    } else if tools.iter().any(|t| t == "shell_command") {
        ("shell_command", json!({"command": cmd}))
    } else {
        ("shell", json!({"command": ["bash", "-lc", cmd]}))
    };
    responses_call(id, name, &args, usage)
}
