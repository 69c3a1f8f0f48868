#!/usr/bin/env bash
# Builds release binaries into dist/: dist/launch and dist/orch-audit.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --release --bin launch --bin orch-audit
mkdir -p dist
cp target/release/launch target/release/orch-audit dist/
echo "built: dist/launch dist/orch-audit"
