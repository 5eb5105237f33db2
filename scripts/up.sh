#!/usr/bin/env bash
# The main job on a fresh machine: install everything, discover the sensors, ingest the last
# 60 days for all of them, train and promote a forecaster, and open the Dagster UI.
# Extra arguments go to `aq up` (e.g. --days 90, --port 3001, --no-train, --no-ui).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/aq up "$@"
