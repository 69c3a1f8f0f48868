//! Running the real Codex CLI in tests: finding it, and a private CODEX_HOME/HOME/XDG
//! tree that points it at a scripted model server.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::model_server::ModelServer;

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

/// A private CODEX_HOME/HOME/XDG tree pointing Codex at `server`, and the env for it.
pub fn codex_env(root: &Path, server: &ModelServer) -> Vec<(OsString, OsString)> {
    let codex_home = root.join("codex-home");
    std::fs::create_dir_all(&codex_home).unwrap();
    let config = format!(
        "model = \"orch-test-model\"\nmodel_provider = \"scripted\"\n\n[model_providers.scripted]\nname = \"scripted\"\nbase_url = \"{}/v1\"\nwire_api = \"responses\"\nenv_key = \"ORCH_SCRIPTED_API_KEY\"\n",
        server.url()
    );
    std::fs::write(codex_home.join("config.toml"), config).unwrap();
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
    env.push((
        "ORCH_SCRIPTED_API_KEY".into(),
        "sk-scripted-test-key".into(),
    ));
    env
}

pub fn git_repo(dir: &Path) {
    std::fs::write(dir.join("README.md"), "# demo\nold line\n").unwrap();
    let status = Command::new("git")
        .args(["init", "-q", "."])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success());
}
