#!/usr/bin/env bash
# Create .venv from the lock file (Python 3.11) and install aq into it. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
# The last line names what failed and what to do (pip's own error is above it).
trap 'status=$?; echo "scripts/setup.sh: \`$BASH_COMMAND\` failed (exit $status). It needs Python 3.11 with venv (Debian: apt-get install python3.11-venv, or set PYTHON=/path/to/python3.11) and access to a package index (pip config list; uv reads UV_INDEX_URL)." >&2' ERR
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
if [ ! -f .venv/.aq-installed ] || [ requirements.lock -nt .venv/.aq-installed ] || [ pyproject.toml -nt .venv/.aq-installed ]; then
  # uv, at the lock's version, installs the lock in about 10 s where pip takes about 2 min.
  # uv does not read pip's configuration (an index set only there): pip is the fallback.
  # Compiled to bytecode at install, as pip does: where PYTHONDONTWRITEBYTECODE is set every
  # process would otherwise compile dagster and pandas again (the code location loaded in
  # 3.5 s instead of 1.5).
  uv=$(grep -m1 '^uv==' requirements.lock)
  if .venv/bin/python -m pip install --quiet --disable-pip-version-check "$uv" &&
    .venv/bin/uv pip install --quiet --compile-bytecode --python .venv/bin/python \
      -r requirements.lock; then
    .venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps -e .
  else
    echo "scripts/setup.sh: uv could not install the lock (above); pip installs it instead." >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  fi
  touch .venv/.aq-installed
fi
