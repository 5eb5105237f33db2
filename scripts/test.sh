#!/usr/bin/env bash
# The one gate, locally and in CI: lint, format, types, tests. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# The last line names the step that failed and how to see or fix it.
trap 'status=$?; case "$BASH_COMMAND" in
  *"ruff check"*) hint="fix with .venv/bin/ruff check --fix ." ;;
  *"ruff format"*) hint="fix with .venv/bin/ruff format ." ;;
  *mypy*) hint="the type errors are listed above" ;;
  *"dg check defs"*) hint="the definitions do not load, for the reason printed above" ;;
  *setup.sh*) hint="the setup failed, for the reason printed just above" ;;
  *pytest*) hint="the failed tests are listed above; re-run one with .venv/bin/pytest -x <path>::<name>" ;;
  *) hint="see the output above" ;;
esac; echo "scripts/test.sh: \`$BASH_COMMAND\` failed (exit $status): $hint" >&2' ERR
./scripts/setup.sh
# The production-topology test checks docker-compose.yml with Debian's docker-compose and runs
# against the local PostgreSQL; the docs and page tests render pages in Debian's headless
# Chromium.
# Install what is missing where we may (root on Debian), else those tests fail and say so.
missing=()
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then
  missing+=(docker-compose)
fi
command -v chromium >/dev/null || missing+=(chromium)
# the forecast page's test drives Chromium through its WebDriver (selenium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
# the README's service commands, run as written by serving/tests/test_readme.py
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive PYTHONWARNINGS=ignore::DeprecationWarning
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/dg check defs
# Two workers (pytest-xdist) taking one test at a time, the slow end-to-end tests first
# (conftest.py).
.venv/bin/pytest -n 2 --maxschedchunk 1 "$@"
