"""The monitoring loop on simulated data: 30 stable days, then each kind of drift.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/drift_loop.py

In-process Dagster, a real DuckDB file and MLflow store per scenario: each day the readings
arrive, `predictions` and `drift_report` (Evidently) are materialized, the `retrain_on_drift`
sensor ticks, and any training it requests runs (cooldown 0, so only the check itself can
prevent a second retraining). Prints one line per day and a verdict per scenario.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from dagster import instance_for_test

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aq_assets_tests.drift_scenario import Scenario

DRIFT_DAY = dt.date(2025, 6, 10)


def run(name: str, drift: str, first: dt.date, days: int) -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, instance_for_test() as instance:
        scenario = Scenario(Path(tmp), drift, instance)
        scenario.start(first)
        outcomes = [scenario.day(first + dt.timedelta(days=i)) for i in range(days)]
    for o in outcomes:
        print(
            f"  {o.day} check {'pass' if o.check_passed else 'FAIL'} share {o.share_drifted:.2f} "
            f"error ratio {o.error_ratio:.2f} retrain {'yes' if o.retrain_requested else 'no'} "
            f"champion v{o.champion_version} [{o.drifted_features}]"
        )
    failures = [o.day for o in outcomes if not o.check_passed]
    print(
        f"{name}: {len(failures)} failed checks {[str(d) for d in failures]}, {scenario.retrains} retrains, "
        f"final champion v{outcomes[-1].champion_version}, {time.perf_counter() - started:.0f} s",
        flush=True,
    )


def main() -> None:
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    run("stable (30 days)", "", DRIFT_DAY - dt.timedelta(days=15), 30)
    for kind in ("level_shift", "variance", "broken_sensor"):
        run(f"{kind} from {DRIFT_DAY}", f"{kind}@{DRIFT_DAY}", DRIFT_DAY - dt.timedelta(days=2), 10)


if __name__ == "__main__":
    main()
