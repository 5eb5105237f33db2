#!/usr/bin/env bash
# The one gate, locally and in CI: lint, format, types, tests. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The production-topology test checks docker-compose.yml with Debian's docker-compose and runs
# against the local PostgreSQL; install the CLI where we may (root on Debian), else it fails and says so.
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive PYTHONWARNINGS=ignore::DeprecationWarning
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"
