//! The private Zellij config dir of a run (`--config-dir .orch/runs/<s>/zellij`).
//!
//! Owns `config.kdl`: Ctrl+S runs the interrupt command (a floating pane that closes when
//! the command exits) in every mode, so Ctrl+S never reaches a pane as XOFF; scroll and
//! search move from Ctrl+S to Alt+S; startup tips, release notes and session
//! serialization are off. Keybinds live here, not in the layout, because Zellij drops
//! layout keybinds on reload. Everything else stays Zellij's default (Ctrl+Q quits).
//!
//! Does not decide what the interrupt command is: the launcher passes its argv.

use std::path::{Path, PathBuf};

use kdl::{KdlDocument, KdlEntry, KdlNode};

use crate::mux::error::MuxError;
use crate::mux::layout::{emit_doc_v1, path_str, string_node};

/// File name of the config inside the config dir.
pub const CONFIG_FILE: &str = "config.kdl";

/// The key hints we show users (status line, `--help`, README), matching `config.kdl`.
pub const KEY_HELP: &str =
    "Ctrl+S pause the squad and show the interrupt summary · Alt+S scroll/search · Ctrl+Q quit";

/// The argv Ctrl+S runs: `<launch> ctl interrupt --session <S> --project-root <root>`.
pub fn interrupt_argv(
    launch_bin: &Path,
    session: &str,
    project_root: &Path,
) -> Result<Vec<String>, MuxError> {
    Ok(vec![
        path_str(launch_bin)?.to_owned(),
        "ctl".to_owned(),
        "interrupt".to_owned(),
        "--session".to_owned(),
        session.to_owned(),
        "--project-root".to_owned(),
        path_str(project_root)?.to_owned(),
    ])
}

/// The text of `config.kdl` (KDL v1) binding Ctrl+S to `interrupt_argv`.
pub fn zellij_config_kdl(interrupt_argv: &[String]) -> Result<String, MuxError> {
    if interrupt_argv.is_empty() {
        return Err(MuxError::EmptyCommand);
    }
    let mut keybinds = KdlNode::new("keybinds");
    let modes = keybinds.ensure_children().nodes_mut();

    // `shared` with no mode list covers every mode, locked included: in locked mode
    // Zellij would otherwise pass Ctrl+S to the pane, where it freezes output (XOFF).
    let mut run = KdlNode::new("Run");
    for arg in interrupt_argv {
        run.push(KdlEntry::new(arg.as_str()));
    }
    let run_options = run.ensure_children().nodes_mut();
    run_options.push(bool_node("floating", true));
    run_options.push(bool_node("close_on_exit", true));
    run_options.push(string_node("name", "interrupt"));
    modes.push(block("shared", &[], vec![bind("Ctrl s", vec![run])]));

    // Zellij's default Ctrl+S (enter scroll mode, where `s` searches) moves to Alt+S.
    modes.push(block(
        "shared_except",
        &["scroll", "locked"],
        vec![bind("Alt s", vec![switch_to_mode("Scroll")])],
    ));
    modes.push(block(
        "shared_among",
        &["scroll", "search"],
        vec![bind("Alt s", vec![switch_to_mode("Normal")])],
    ));

    let mut doc = KdlDocument::new();
    doc.nodes_mut().push(keybinds);
    doc.nodes_mut().push(bool_node("show_startup_tips", false));
    doc.nodes_mut().push(bool_node("show_release_notes", false));
    doc.nodes_mut()
        .push(bool_node("session_serialization", false));
    Ok(emit_doc_v1(doc))
}

/// Creates `dir` and writes `config.kdl` into it; returns the file's path.
pub fn write_zellij_config_dir(dir: &Path, interrupt_argv: &[String]) -> Result<PathBuf, MuxError> {
    let text = zellij_config_kdl(interrupt_argv)?;
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MuxError::Write { path, source }
    };
    crate::private_fs::create_dir_all(dir).map_err(write_err(dir))?;
    let file = dir.join(CONFIG_FILE);
    crate::private_fs::write(&file, text.as_bytes()).map_err(write_err(&file))?;
    Ok(file)
}

fn block(name: &str, modes: &[&str], binds: Vec<KdlNode>) -> KdlNode {
    let mut node = KdlNode::new(name);
    for mode in modes {
        node.push(KdlEntry::new(*mode));
    }
    node.ensure_children().nodes_mut().extend(binds);
    node
}

fn bind(key: &str, actions: Vec<KdlNode>) -> KdlNode {
    let mut node = KdlNode::new("bind");
    node.push(KdlEntry::new(key));
    node.ensure_children().nodes_mut().extend(actions);
    node
}

fn switch_to_mode(mode: &str) -> KdlNode {
    string_node("SwitchToMode", mode)
}

fn bool_node(name: &str, value: bool) -> KdlNode {
    let mut node = KdlNode::new(name);
    node.push(KdlEntry::new(value));
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_argv() -> Vec<String> {
        interrupt_argv(
            Path::new("/opt/orch bin/launch"),
            "run-20261122-101010-abcd",
            Path::new("/home/me/my \"repo\""),
        )
        .unwrap()
    }

    #[test]
    fn config_snapshot() {
        insta::assert_snapshot!(zellij_config_kdl(&sample_argv()).unwrap());
    }

    #[test]
    fn run_arguments_are_data() {
        let text = zellij_config_kdl(&sample_argv()).unwrap();
        let doc = KdlDocument::parse_v1(&text).unwrap();
        let shared = doc
            .get("keybinds")
            .unwrap()
            .children()
            .unwrap()
            .get("shared")
            .unwrap();
        assert!(
            shared.entries().is_empty(),
            "Ctrl+S must be bound in every mode"
        );
        let bind = shared.children().unwrap().get("bind").unwrap();
        assert_eq!(bind.get(0).and_then(|v| v.as_string()), Some("Ctrl s"));
        let run = bind.children().unwrap().get("Run").unwrap();
        let args: Vec<&str> = run.iter().filter_map(|e| e.value().as_string()).collect();
        assert_eq!(args, sample_argv());
        let options = run.children().unwrap();
        assert_eq!(
            options.get_arg("floating").and_then(|v| v.as_bool()),
            Some(true)
        );
        assert_eq!(
            options.get_arg("close_on_exit").and_then(|v| v.as_bool()),
            Some(true)
        );
        assert!(
            !text.contains("#true") && !text.contains("#false"),
            "KDL v1 only"
        );
    }

    #[test]
    fn an_empty_command_is_refused() {
        assert!(matches!(
            zellij_config_kdl(&[]),
            Err(MuxError::EmptyCommand)
        ));
    }
}
