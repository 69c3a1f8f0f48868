//! Turso's own AgentFS Python SDK (agentfs-sdk 0.6.4) reads a copy of our audit file:
//! turn files byte for byte, and the `tool_calls` rows.

use std::process::Command;

use orch::audit::AuditTarget;

use crate::support::*;

const SCRIPT: &str = r#"
import asyncio, json, sys
from agentfs_sdk import AgentFS, AgentFSOptions

async def main(db, session, expected_dir):
    fs_ = await AgentFS.open(AgentFSOptions(path=db))
    out = {"files": {}, "tools": []}
    agents = await fs_.fs.readdir(f"/runs/{session}/agents")
    out["agents"] = sorted(agents)
    for agent in agents:
        for name in sorted(await fs_.fs.readdir(f"/runs/{session}/agents/{agent}")):
            path = f"/runs/{session}/agents/{agent}/{name}"
            data = await fs_.fs.read_file(path, encoding=None)
            expected = open(f"{expected_dir}/{agent}__{name}", "rb").read()
            out["files"][path] = {"size": len(data), "same": data == expected}
            st = await fs_.fs.stat(path)
            assert st.is_file() and st.size == len(data), (path, st)
    events = await fs_.fs.read_file(f"/runs/{session}/events/planner.jsonl")
    out["planner_events"] = len(events.splitlines())
    for call in await fs_.tools.get_recent(0):
        out["tools"].append({"name": call.name, "status": call.status, "duration_ms": call.duration_ms,
                             "path": call.parameters["path"]})
    out["stats"] = [s.name for s in await fs_.tools.get_stats()]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agentfs_sdk_reads_turn_files_and_tool_calls() {
    let Some(python) = python_with_sdk() else {
        return skip_or_fail("python3 with agentfs-sdk==0.6.4");
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let session = "run-20261122-121212-cafe";
    simulate_run(AuditTarget::Local(db.clone()), session, &Shape::default()).await;

    // What orch-audit says each turn file holds, for a byte-for-byte comparison.
    let expected = dir.path().join("expected");
    std::fs::create_dir(&expected).unwrap();
    for agent in ["planner", "researcher", "builder", "api-impl"] {
        for name in ["001-plan.json", "002-follow-up.json"] {
            let out = orch_audit(
                &db,
                &["cat", &format!("/runs/{session}/agents/{agent}/{name}")],
            );
            assert!(out.status.success());
            std::fs::write(expected.join(format!("{agent}__{name}")), &out.stdout).unwrap();
        }
    }
    // The SDK writes on open (schema_version, atime): give it a copy.
    let copy = dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let output = Command::new(python)
        .args(["-c", SCRIPT])
        .arg(&copy)
        .arg(session)
        .arg(&expected)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "SDK failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["agents"],
        serde_json::json!(["api-impl", "builder", "planner", "researcher"])
    );
    let files = report["files"].as_object().unwrap();
    assert_eq!(files.len(), 8);
    for (path, file) in files {
        assert_eq!(file["same"], true, "{path} differs as read by the SDK");
        assert!(file["size"].as_u64().unwrap() > 4096, "{path} spans chunks");
    }
    assert!(report["planner_events"].as_u64().unwrap() > 10);
    let tools = report["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 8, "one tool_calls row per finished turn");
    assert!(tools.iter().all(|t| t["status"] == "success"));
    assert!(tools.iter().any(|t| t["name"] == "turn:builder:follow-up"
        && t["path"] == format!("/runs/{session}/agents/builder/002-follow-up.json")));
    // And the original still verifies (the SDK only touched the copy).
    assert!(orch_audit(&db, &["verify"]).status.success());
}
