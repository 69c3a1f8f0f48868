//! Turso's own AgentFS Python SDK (agentfs-sdk 0.6.4) opens a copy of a demo run's
//! audit file (written by the real `launch`): every turn file byte for byte, the
//! events files, and one `tool_calls` row per finished turn.

use std::collections::BTreeMap;
use std::process::Command;

use crate::repo::TestRepo;
use crate::support::*;

/// Lists and reads through the SDK only; writes each turn file's bytes to `out_dir`.
const SCRIPT: &str = r#"
import asyncio, json, os, sys
from agentfs_sdk import AgentFS, AgentFSOptions

async def main(db, session, out_dir):
    fs_ = await AgentFS.open(AgentFSOptions(path=db))
    out = {"files": {}, "events": {}, "tools": []}
    for agent in sorted(await fs_.fs.readdir(f"/runs/{session}/agents")):
        for name in sorted(await fs_.fs.readdir(f"/runs/{session}/agents/{agent}")):
            path = f"/runs/{session}/agents/{agent}/{name}"
            data = await fs_.fs.read_file(path, encoding=None)
            st = await fs_.fs.stat(path)
            assert st.is_file() and st.size == len(data), (path, st.size, len(data))
            dump = os.path.join(out_dir, f"{agent}__{name}")
            with open(dump, "wb") as f:
                f.write(data)
            out["files"][path] = dump
    for name in sorted(await fs_.fs.readdir(f"/runs/{session}/events")):
        text = await fs_.fs.read_file(f"/runs/{session}/events/{name}")
        out["events"][name] = [json.loads(line)["seq"] for line in text.splitlines()]
    for call in await fs_.tools.get_recent(0):
        out["tools"].append({"name": call.name, "status": call.status,
                             "duration_ms": call.duration_ms, "parameters": call.parameters})
    await fs_.close()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
"#;

fn python_with_sdk() -> Option<String> {
    for python in ["python3", "python"] {
        let ok = Command::new(python)
            .args(["-c", "import agentfs_sdk, importlib.metadata as m; assert m.version('agentfs-sdk') == '0.6.4'"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(python.to_owned());
        }
    }
    None
}

#[test]
fn the_agentfs_sdk_reads_a_demo_runs_turn_files_and_tool_calls() {
    let Some(python) = python_with_sdk() else {
        return skip_or_fail("python3 with agentfs-sdk==0.6.4");
    };
    let repo = TestRepo::new();
    // A long task makes every plan turn's file span several 4096-byte chunks.
    let prompt = format!(
        "Ship the MVP. {}",
        "Keep the API small and tested. ".repeat(200)
    );
    let out = demo_launch(&repo, "delay=1", &["--prompt", &prompt])
        .output()
        .unwrap();
    assert_ok(&out);
    let db = repo_db(&repo);
    let session = only_session(&repo);
    let rows = export(&db, &session);
    let turns: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["kind"] == "turn_finished")
        .collect();
    assert_eq!(turns.len(), 12, "six agents, two turns each");

    // The SDK writes on open (schema_version, atime): give it a copy.
    let copy = repo.dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let dumps = repo.dir.path().join("sdk-read");
    std::fs::create_dir(&dumps).unwrap();
    let output = Command::new(python)
        .args(["-c", SCRIPT])
        .arg(&copy)
        .arg(&session)
        .arg(&dumps)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "SDK failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    // Every turn file: the SDK's bytes are orch-audit's bytes, and they hold the turn
    // exactly as its turn_finished event recorded it.
    let files = report["files"].as_object().unwrap();
    // Besides a file per finished turn, each agent that changed files has its
    // changes.patch and changes.json, which the SDK reads too.
    let turn_files = files
        .keys()
        .filter(|path| !path.ends_with("/changes.patch") && !path.ends_with("/changes.json"))
        .count();
    assert_eq!(turn_files, turns.len(), "one file per finished turn");
    for (path, dump) in files
        .iter()
        .filter(|(path, _)| path.ends_with("/changes.patch"))
    {
        let sdk_bytes = std::fs::read(dump.as_str().unwrap()).unwrap();
        let ours = orch_audit(&db, &["cat", path]);
        assert_eq!(sdk_bytes, ours.stdout, "{path} differs as read by the SDK");
        assert!(sdk_bytes.starts_with(b"diff --git"), "{path}");
    }
    for turn in &turns {
        let p = &turn["payload"];
        let path = format!(
            "/runs/{session}/agents/{}/{:03}-{}.json",
            p["agent"].as_str().unwrap(),
            p["turn"].as_u64().unwrap(),
            p["kind"].as_str().unwrap()
        );
        let dump = files
            .get(&path)
            .unwrap_or_else(|| panic!("the SDK did not list {path}"));
        let sdk_bytes = std::fs::read(dump.as_str().unwrap()).unwrap();
        let ours = orch_audit(&db, &["cat", &path]);
        assert!(ours.status.success());
        assert_eq!(sdk_bytes, ours.stdout, "{path} differs as read by the SDK");
        if p["kind"] == "plan" {
            // Plan prompts carry the task; follow-ups continue the same thread.
            assert!(sdk_bytes.len() > 4096, "{path} spans chunks");
        }
        let doc: serde_json::Value = serde_json::from_slice(&sdk_bytes).unwrap();
        for (file_key, event_key) in [
            ("agent", "agent"),
            ("turn", "turn"),
            ("type", "kind"),
            ("prompt", "prompt"),
            ("response", "response"),
            ("thread_id", "thread_id"),
            ("usage", "usage"),
            ("outcome", "outcome"),
        ] {
            assert_eq!(doc[file_key], p[event_key], "{path}: `{file_key}`");
        }
        assert_eq!(doc["session"], session.as_str());
    }

    // Every events file lists exactly its agent's rows, in order.
    let mut want: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for row in &rows {
        let file = match row["agent"].as_str() {
            Some(agent) => format!("{agent}.jsonl"),
            None => "timeline.jsonl".to_owned(),
        };
        want.entry(file)
            .or_default()
            .push(row["seq"].as_i64().unwrap());
    }
    let got: BTreeMap<String, Vec<i64>> = serde_json::from_value(report["events"].clone()).unwrap();
    assert_eq!(got, want);

    // One tool_calls row per finished turn, pointing at its turn file.
    let tools = report["tools"].as_array().unwrap();
    assert_eq!(
        tools.len(),
        turns.len(),
        "one tool_calls row per finished turn"
    );
    for tool in tools {
        let params = &tool["parameters"];
        let path = params["path"].as_str().unwrap();
        assert!(files.contains_key(path), "{tool}");
        assert_eq!(tool["status"], "success", "{tool}");
        assert_eq!(
            tool["name"],
            format!(
                "turn:{}:{}",
                params["agent"].as_str().unwrap(),
                params["type"].as_str().unwrap()
            )
        );
        assert_eq!(params["session"], session.as_str());
        assert!(tool["duration_ms"].as_i64().unwrap() >= 0);
    }
    // And the original still verifies (the SDK only touched the copy).
    let verify = orch_audit(&db, &["verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
}
