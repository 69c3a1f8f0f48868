// Bench-only (scripts/bench.sh): writes events as AgentFS files with Turso's own
// AgentFS SDK (npm agentfs-sdk), the way orch lays them out in its audit store:
// one append-only /runs/<session>/events/<agent>.jsonl per agent.
//
//   node agentfs.mjs SDK_DIR EVENTS_FILE DB_PATH MODE LIMIT
//
// EVENTS_FILE holds `<agent>\t<json line>` lines (bench_store export). MODE:
//   per-event  one FileHandle.pwrite per event, each its own implicit transaction
//              (the SDK's natural append)
//   batched    the events of up to 1000 lines per BEGIN/COMMIT, one pwrite per file
//              per transaction (orch's group commit, done with the SDK)
// Prints {"events", "seconds", "events_per_s"}; opening the store and reading the
// input are not timed.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [sdkDir, eventsFile, dbPath, mode, limitText] = process.argv.slice(2);
const { AgentFS } = await import(
  pathToFileURL(join(sdkDir, "node_modules/agentfs-sdk/dist/index_node.js")).href
);
const limit = Number(limitText || "0");
let lines = readFileSync(eventsFile, "utf8").split("\n").filter((l) => l.length > 0);
if (limit > 0) lines = lines.slice(0, limit);
const events = lines.map((l) => {
  const tab = l.indexOf("\t");
  return { agent: l.slice(0, tab), bytes: Buffer.from(l.slice(tab + 1) + "\n") };
});

const agentfs = await AgentFS.open({ path: dbPath });
const db = agentfs.getDatabase();
const files = new Map();
for (const { agent } of events) {
  if (!files.has(agent)) {
    const path = `/runs/run-bench/events/${agent}.jsonl`;
    await agentfs.fs.writeFile(path, "");
    files.set(agent, { handle: await agentfs.fs.open(path), size: 0 });
  }
}

const started = process.hrtime.bigint();
if (mode === "per-event") {
  for (const { agent, bytes } of events) {
    const file = files.get(agent);
    await file.handle.pwrite(file.size, bytes);
    file.size += bytes.length;
  }
} else {
  for (let i = 0; i < events.length; i += 1000) {
    const byAgent = new Map();
    for (const { agent, bytes } of events.slice(i, i + 1000)) {
      if (!byAgent.has(agent)) byAgent.set(agent, []);
      byAgent.get(agent).push(bytes);
    }
    await db.exec("BEGIN");
    for (const [agent, parts] of byAgent) {
      const file = files.get(agent);
      const bytes = Buffer.concat(parts);
      await file.handle.pwrite(file.size, bytes);
      file.size += bytes.length;
    }
    await db.exec("COMMIT");
  }
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
await agentfs.close();
console.log(JSON.stringify({ events: events.length, seconds, events_per_s: events.length / seconds }));
