#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it. On a fresh machine it first
# installs what the tests need: the Rust crates (cargo fetches them), a
# Python virtualenv in .venv with the packages of scripts/requirements-test.txt,
# the YAML language server (npm) under scripts/editor/, and Debian's chromium
# (apt-get, as root or with sudo) for the tests that render pages.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "python virtualenv (.venv)"
requirements=scripts/requirements-test.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" > "$stamp"
fi

step "YAML language server (scripts/editor/node_modules), for the editor test"
if [ ! -x scripts/editor/node_modules/.bin/yaml-language-server ]; then
  (cd scripts/editor && npm ci --silent --no-audit --no-fund)
fi

step "Chromium (headless), for the tests of the status page and the simulator's report"
if [ -z "${STEVEDORE_CHROMIUM:-}" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  # Debian's package, as the README says; root, or sudo without a password.
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo -n"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test"
export STEVEDORE_PYTHON="$PWD/.venv/bin/python"
# Cases per property test, unless a test sets its own: the planner's
# reference 3,000, the optimum 2,000, the spread models 1,000, the loader's
# fuzzing 512, whole simulator runs 100.
export PROPTEST_CASES="${PROPTEST_CASES:-256}"
cargo test --locked --all-targets
# Doc tests are not part of --all-targets.
cargo test --locked --doc
