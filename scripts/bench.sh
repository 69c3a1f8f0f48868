#!/usr/bin/env bash
# Benchmarks (issue 6): event throughput, latency, the audit path against Turso's
# AgentFS SDK, scheduling, memory, orch-audit on a large store, launch overhead,
# isolation (git worktrees per agent on a generated 20,000-file repository).
# Writes BENCHMARKS.md (--quick: target/bench/BENCHMARKS.md, a smoke test).
#
#   scripts/bench.sh [--quick] [--out FILE]
#
# Needs a Rust toolchain, python3 and node/npm. Installs Turso's `agentfs-sdk` from npm
# into $ORCH_TOOLS_DIR/bench-npm (default ~/.cache/orch-tools) if missing. Every run
# gets a private HOME/XDG/CODEX_HOME under target/bench/scratch, removed at the end.
# Not part of .ci/run: timings belong here, not in tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh

for tool in cargo python3 node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool is required" >&2; exit 2; }
done

sdk_dir="$ORCH_TOOLS_DIR/bench-npm"
if [ ! -f "$sdk_dir/node_modules/agentfs-sdk/package.json" ] ||
  ! grep -q "\"version\": \"$AGENTFS_SDK_VERSION\"" "$sdk_dir/node_modules/agentfs-sdk/package.json"; then
  say "installing agentfs-sdk@$AGENTFS_SDK_VERSION (npm) into $sdk_dir"
  mkdir -p "$sdk_dir"
  npm install --prefix "$sdk_dir" --no-fund --no-audit --loglevel=error "agentfs-sdk@$AGENTFS_SDK_VERSION" >/dev/null
fi

echo "bench: building release binaries and bench helpers" >&2
cargo build --release --locked --bins \
  --example bench_agent --example bench_probe --example bench_store

exec python3 scripts/bench/driver.py --sdk-dir "$sdk_dir" --sdk-version "$AGENTFS_SDK_VERSION" "$@"
