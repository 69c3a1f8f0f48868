//! Commands that Codex ran but left out of its `--json` stream.
//!
//! `codex exec --json` reports each shell command as a `command_execution` item, except
//! when it does not: a command its sandbox refused part-way (an agent's own `git commit`,
//! refused with "Read-only file system" on the worktree's git dir) is left out, or only
//! started and never completed. The thread's session
//! record (`$CODEX_HOME/sessions/YYYY/MM/DD/rollout-…-<thread id>.jsonl`) does hold every
//! `exec_command` call and its output. After a turn, the backend reads the record's last
//! turn and reports each command the stream did not show, so the agent's log and the
//! audit store have it, with its exit code and output.
//!
//! The record is Codex's internal format: anything that does not parse is skipped, and a
//! missing record changes nothing.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::agent::event::{AgentEvent, ItemStatus};

/// Output kept per recovered command (the tail: the end says what went wrong).
const OUTPUT_TAIL: usize = 4096;

/// A shell command of the record's last turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedCommand {
    pub call_id: String,
    pub command: String,
    pub exit_code: Option<i32>,
    pub output: Option<String>,
}

/// The session record of `thread_id` under `codex_home/sessions`, if there is one.
pub fn find_record(codex_home: &Path, thread_id: &str) -> Option<PathBuf> {
    let suffix = format!("-{thread_id}.jsonl");
    // sessions/YYYY/MM/DD/rollout-…: newest days first, the thread is usually today's.
    let mut dirs = vec![codex_home.join("sessions")];
    for _ in 0..3 {
        let mut next = Vec::new();
        for dir in &dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut subdirs: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            subdirs.sort_by(|a, b| b.cmp(a));
            next.extend(subdirs);
        }
        dirs = next;
    }
    dirs.iter().find_map(|day| {
        std::fs::read_dir(day).ok()?.flatten().find_map(|entry| {
            let name = entry.file_name();
            let name = name.to_str()?;
            (name.starts_with("rollout-") && name.ends_with(&suffix)).then(|| entry.path())
        })
    })
}

/// The shell commands of the record's last turn (after its last `task_started`).
pub fn last_turn_commands(record: &str) -> Vec<RecordedCommand> {
    let lines: Vec<Value> = record
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let start = lines
        .iter()
        .rposition(|v| {
            v.get("type").and_then(Value::as_str) == Some("event_msg")
                && v.pointer("/payload/type").and_then(Value::as_str) == Some("task_started")
        })
        .map_or(0, |i| i + 1);
    let mut commands: Vec<RecordedCommand> = Vec::new();
    for line in &lines[start..] {
        if line.get("type").and_then(Value::as_str) != Some("response_item") {
            continue;
        }
        let Some(payload) = line.get("payload") else {
            continue;
        };
        let call_id = payload.get("call_id").and_then(Value::as_str);
        match (payload.get("type").and_then(Value::as_str), call_id) {
            (Some("function_call"), Some(call_id)) => {
                if let Some(command) = shell_command(payload) {
                    commands.push(RecordedCommand {
                        call_id: call_id.to_string(),
                        command,
                        exit_code: None,
                        output: None,
                    });
                }
            }
            (Some("function_call_output"), Some(call_id)) => {
                let output = match payload.get("output") {
                    Some(Value::String(text)) => text.clone(),
                    Some(other) => other.to_string(),
                    None => continue,
                };
                if let Some(command) = commands.iter_mut().find(|c| c.call_id == call_id) {
                    command.exit_code = exit_code(&output);
                    command.output = Some(tail(&output));
                }
            }
            _ => {}
        }
    }
    commands
}

/// The command line of a shell tool call (`exec_command`, `shell_command`, `shell`).
fn shell_command(payload: &Value) -> Option<String> {
    let name = payload.get("name").and_then(Value::as_str)?;
    let args: Value = serde_json::from_str(payload.get("arguments")?.as_str()?).ok()?;
    match name {
        "exec_command" => args.get("cmd")?.as_str().map(str::to_string),
        "shell_command" => args.get("command")?.as_str().map(str::to_string),
        "shell" => Some(
            args.get("command")?
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    }
}

/// "Process exited with code N" (or "Exit code: N") in a tool output.
fn exit_code(output: &str) -> Option<i32> {
    let rest = ["Process exited with code ", "Exit code: "]
        .iter()
        .find_map(|marker| output.split(marker).nth(1))?;
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

fn tail(text: &str) -> String {
    if text.len() <= OUTPUT_TAIL {
        return text.to_string();
    }
    let mut start = text.len() - OUTPUT_TAIL;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// Letters and digits only: the stream shows a command wrapped and re-quoted
/// (`/bin/bash -lc "…"`), the record as the model wrote it.
pub fn normalized(command: &str) -> String {
    command.chars().filter(|c| c.is_alphanumeric()).collect()
}

/// The recorded commands that none of the stream's commands (`seen`) shows, as events.
pub fn missing_commands(recorded: &[RecordedCommand], seen: &[String]) -> Vec<AgentEvent> {
    let seen: Vec<String> = seen.iter().map(|s| normalized(s)).collect();
    recorded
        .iter()
        .filter(|c| {
            // Codex reports an `apply_patch` run through the shell as a file change.
            if c.command.trim_start().starts_with("apply_patch") {
                return false;
            }
            let wanted = normalized(&c.command);
            !seen.iter().any(|s| s.contains(&wanted))
        })
        .map(|c| AgentEvent::Command {
            id: Some(c.call_id.clone()),
            command: c.command.clone(),
            status: match c.exit_code {
                Some(0) => ItemStatus::Completed,
                _ => ItemStatus::Failed,
            },
            exit_code: c.exit_code,
            output: Some(match &c.output {
                Some(output) => {
                    format!("(not in codex's event stream; from its session record)\n{output}")
                }
                None => {
                    "(not in codex's event stream; from its session record; no output recorded)"
                        .into()
                }
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of a Codex 0.169 session record: an earlier turn, then a turn whose
    /// `git commit` the sandbox refused and one command the stream did show.
    fn record() -> String {
        let call = |id: &str, cmd: &str| {
            serde_json::json!({"type": "response_item", "payload": {"type": "function_call",
                "name": "exec_command", "arguments": serde_json::json!({"cmd": cmd}).to_string(), "call_id": id}})
            .to_string()
        };
        let output = |id: &str, out: &str| {
            serde_json::json!({"type": "response_item", "payload": {"type": "function_call_output",
                "call_id": id, "output": out}})
            .to_string()
        };
        let task = r#"{"type":"event_msg","payload":{"type":"task_started"}}"#;
        [
            r#"{"type":"session_meta","payload":{"id":"t"}}"#.to_string(),
            task.to_string(),
            call("c1", "echo earlier"),
            output("c1", "Process exited with code 0\nOutput:\nearlier\n"),
            task.to_string(),
            call("c2", "echo self > SELF.md && git commit -q -m 'mine'"),
            output(
                "c2",
                "Chunk ID: x\nProcess exited with code 128\nOutput:\nfatal: Unable to create '/r/.git/worktrees/a/index.lock': Read-only file system\n",
            ),
            call("c3", "sed -i 's/^two$/2/' lib.txt"),
            output("c3", "Process exited with code 0\nOutput:\n"),
            call("c4", "apply_patch <<'PATCH'\n*** Begin Patch\nPATCH"),
            output("c4", "Exit code: 0\nOutput:\nSuccess.\n"),
            "not json".to_string(),
        ]
        .join("\n")
    }

    #[test]
    fn the_last_turns_commands_with_exit_codes() {
        let commands = last_turn_commands(&record());
        assert_eq!(commands.len(), 3);
        assert_eq!(commands[2].exit_code, Some(0));
        assert_eq!(
            commands[0].command,
            "echo self > SELF.md && git commit -q -m 'mine'"
        );
        assert_eq!(commands[0].exit_code, Some(128));
        assert!(
            commands[0]
                .output
                .as_deref()
                .unwrap()
                .contains("Read-only file system")
        );
        assert_eq!(commands[1].exit_code, Some(0));
    }

    #[test]
    fn only_commands_the_stream_did_not_show_are_reported() {
        let commands = last_turn_commands(&record());
        let seen = vec![r#"/bin/bash -lc "sed -i 's/"'^two$/2/'"' lib.txt""#.to_string()];
        let missing = missing_commands(&commands, &seen);
        assert_eq!(missing.len(), 1);
        let AgentEvent::Command {
            command,
            status,
            exit_code,
            output,
            ..
        } = &missing[0]
        else {
            panic!("{missing:?}");
        };
        assert!(command.contains("git commit"));
        assert_eq!(*status, ItemStatus::Failed);
        assert_eq!(*exit_code, Some(128));
        assert!(output.as_deref().unwrap().contains("session record"));
        assert!(
            missing_commands(&commands, &[commands[0].command.clone(), seen[0].clone()]).is_empty()
        );
    }

    #[test]
    fn the_record_is_found_by_thread_id_under_dated_dirs() {
        let home = tempfile::tempdir().unwrap();
        let day = home.path().join("sessions/2026/12/02");
        std::fs::create_dir_all(&day).unwrap();
        let file = day.join("rollout-2026-12-02T19-53-04-abc-123.jsonl");
        std::fs::write(&file, "").unwrap();
        assert_eq!(find_record(home.path(), "abc-123"), Some(file));
        assert_eq!(find_record(home.path(), "other"), None);
        assert_eq!(find_record(&home.path().join("missing"), "abc-123"), None);
    }

    #[test]
    fn a_long_output_keeps_its_tail() {
        let long = format!("Process exited with code 1\n{}END", "é".repeat(5000));
        let kept = tail(&long);
        assert!(kept.ends_with("END") && kept.len() <= OUTPUT_TAIL + 4);
        assert_eq!(exit_code(&long), Some(1));
    }
}
