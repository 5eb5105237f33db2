"""Evidently on large data: time and memory of one drift report against a plain per-feature
NumPy/SciPy K-S test over the same data, measured in one run.

    .venv/bin/python benchmarks/drift_evidently.py [--repeats 3] [--large-repeats 1]

Cases:
- daily: 20 sensors × 60 days of reference (28,800 rows) against 20 sensors × 1 day (480 rows);
- 1M: 1,000,000 rows (20 sensors × 50,000 hours) against 1,000,000 rows.

Data: SYNTHETIC, not the simulated source: 12 numeric feature columns built per sensor on an
hourly grid from an AR(1) log-normal pm25 series (level, lag_1, lag_24, mean_24, std_24,
change_1; ~5% missing hours), a temperature with a diurnal cycle and AR noise, a humidity that
falls as it warms, log-normal no2 and o3, and hour_sin / hour_cos. The current window is a
later stretch with a warm spell (+3 °C) and 30% more pm25, so some columns drift and others
(the hour encodings) cannot.

Implementations, each in its own subprocess per case so that process RSS is per measurement:
- scipy_ks: `ks_drift_frame` (scipy.stats.ks_2samp per column, NaN removed);
- evidently: `drift_summary` with Evidently's default per-column test (picked by size);
- evidently_ks: `drift_summary(..., DriftThresholds(method="ks"))`, the like-for-like test;
- evidently_html: `drift_summary(..., html_path=...)`: the DataDriftPreset report plus
  `save_html`; its extra cost over `evidently` is the HTML's cost, `save_html` alone is timed
  too.

Each subprocess builds the data, warms up on 200 rows (imports and lazy loading excluded),
then times `--repeats` runs (`--large-repeats` for 1M) and reports the median wall time and
the median CPU time of the process (steadier than wall time on a shared machine). Memory is
measured in a second subprocess per measurement, under tracemalloc (which slows Python code,
hence not timed): the peak of memory allocated during one run above what was allocated before
it (NumPy and pandas buffers included). Max RSS is the whole timed process's high-water mark,
data included. The import time of Evidently is measured on its own.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from aq_assets.ml.drift import DriftThresholds, drift_summary, ks_drift_frame

CASES = {
    # name: (sensors, reference hours per sensor, current hours per sensor)
    "daily": (20, 60 * 24, 24),
    "1M": (20, 50_000, 50_000),
}
IMPLEMENTATIONS = ("scipy_ks", "evidently", "evidently_ks", "evidently_html")
COLUMNS = [
    "level",
    "lag_1",
    "lag_24",
    "mean_24",
    "std_24",
    "change_1",
    "temperature_now",
    "relativehumidity_now",
    "no2_now",
    "o3_now",
    "hour_sin",
    "hour_cos",
]
GOAL_RATIO = 3.0


# ---- data ------------------------------------------------------------------------------


def feature_frames(
    sensors: int, reference_hours: int, current_hours: int, seed: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current frames of the 12 synthetic feature columns, sensor-major rows:
    one continuous hourly series per sensor, the current window the last `current_hours`,
    from whose start it is 3 °C warmer and pm25 30% higher (lags and windows at the start
    of the current window still read reference hours, as they would)."""
    rng = np.random.default_rng(seed)
    hours = reference_hours + current_hours
    shape = (hours, sensors)
    index = np.arange(hours)[:, None]
    after = index >= reference_hours
    hour = index % 24 * np.ones(shape)
    diurnal = np.sin(2 * np.pi * (hour - 9) / 24)
    latent = lfilter([1.0], [1.0, -0.95], rng.normal(0, 0.3, shape), axis=0)
    pm25 = np.where(after, 1.3, 1.0) * np.exp(
        2.6 + latent + 0.25 * diurnal + rng.normal(0, 0.1, shape)
    )
    pm25[rng.random(shape) < 0.05] = np.nan
    wide = pd.DataFrame(pm25)
    temperature = (
        15
        + np.where(after, 3.0, 0.0)
        + 7 * diurnal
        + lfilter([1.0], [1.0, -0.9], rng.normal(0, 0.5, shape), axis=0)
    )
    columns = {
        "level": pm25,
        "lag_1": wide.shift(1).to_numpy(),
        "lag_24": wide.shift(24).to_numpy(),
        "mean_24": wide.rolling(24, min_periods=8).mean().to_numpy(),
        "std_24": wide.rolling(24, min_periods=8).std().to_numpy(),
        "change_1": (wide - wide.shift(1)).to_numpy(),
        "temperature_now": temperature,
        "relativehumidity_now": np.clip(
            70 - 2.0 * (temperature - 15) + rng.normal(0, 8, shape), 5, 100
        ),
        "no2_now": np.exp(3.0 + 0.6 * latent - 0.3 * diurnal + rng.normal(0, 0.3, shape)),
        "o3_now": np.exp(3.2 + 0.6 * diurnal - 0.3 * latent + rng.normal(0, 0.3, shape)),
        "hour_sin": np.sin(2 * np.pi * hour / 24),
        "hour_cos": np.cos(2 * np.pi * hour / 24),
    }
    frames = []
    for rows in (slice(0, reference_hours), slice(reference_hours, hours)):
        frames.append(pd.DataFrame({name: v[rows].ravel(order="F") for name, v in columns.items()}))
    return frames[0], frames[1]


def case_frames(case: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    return feature_frames(*CASES[case])


# ---- one measurement (child process) ---------------------------------------------------


def run_once(
    implementation: str, reference: pd.DataFrame, current: pd.DataFrame, html_dir: Path
) -> dict[str, Any]:
    if implementation == "scipy_ks":
        return {"share": ks_drift_frame(reference, current, COLUMNS)}
    thresholds = DriftThresholds(method="ks" if implementation == "evidently_ks" else None)
    html_path = html_dir / "drift.html" if implementation == "evidently_html" else None
    summary = drift_summary(reference, current, COLUMNS, thresholds, html_path=html_path)
    return {
        "share": summary.share_drifted,
        "drifted": summary.drifted_columns,
        "methods": dict(Counter(s["method"] for s in summary.scores.values())),
        "html_bytes": html_path.stat().st_size if html_path else None,
    }


def child(case: str, implementation: str, mode: str, repeats: int) -> dict[str, Any]:
    save_seconds: list[float] = []
    if implementation == "evidently_html":  # time save_html inside drift_summary
        from evidently.core.report import Snapshot

        save_html = Snapshot.save_html

        def timed_save_html(self, filename):
            start = time.perf_counter()
            save_html(self, filename)
            save_seconds.append(time.perf_counter() - start)

        Snapshot.save_html = timed_save_html  # type: ignore[method-assign]

    reference, current = case_frames(case)
    with tempfile.TemporaryDirectory(prefix="aq-bench-drift-") as tmp:
        html_dir = Path(tmp)
        warm_ref, warm_cur = case_frames("daily")
        run_once(implementation, warm_ref.head(200), warm_cur.head(200), html_dir)
        del warm_ref, warm_cur
        save_seconds.clear()
        gc.collect()
        if mode == "memory":
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            result = run_once(implementation, reference, current, html_dir)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            return {**result, "peak_mb": (peak - before) / 2**20}
        seconds, cpu_seconds = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            result = run_once(implementation, reference, current, html_dir)
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - start_cpu)
            gc.collect()
    return {
        **result,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "save_html_seconds": save_seconds,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": [len(reference), len(current)],
    }


# ---- the run (parent process) ----------------------------------------------------------


def measure(case: str, implementation: str, mode: str, repeats: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        case,
        implementation,
        mode,
        "--repeats",
        str(repeats),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def import_seconds() -> float:
    code = (
        "import time; t = time.perf_counter(); "
        "import evidently, evidently.metrics, evidently.presets; "
        "print(time.perf_counter() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, daily case")
    parser.add_argument("--large-repeats", type=int, default=1, help="timed runs, 1M case")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, repeats=args.repeats)))
        return

    started = time.perf_counter()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}, evidently {version('evidently')}, "
        f"pandas {pd.__version__}, numpy {np.__version__}, scipy {version('scipy')}; "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    print(
        f"data: synthetic, {len(COLUMNS)} numeric feature columns ({', '.join(COLUMNS)}); "
        "current = a later stretch, +3 °C and ×1.3 pm25"
    )
    print(f"import evidently (+ metrics, presets), fresh process: {import_seconds():.2f} s")

    for case in args.cases:
        repeats = args.repeats if case == "daily" else args.large_repeats
        results = {}
        for implementation in IMPLEMENTATIONS:
            timed = measure(case, implementation, "time", repeats)
            memory = measure(case, implementation, "memory", 1)
            results[implementation] = {**timed, "peak_mb": memory["peak_mb"]}
        rows = results["scipy_ks"]["rows"]
        print()
        print(
            f"== case {case}: reference {rows[0]:,} rows, current {rows[1]:,} rows, "
            f"{len(COLUMNS)} columns; median of {repeats} run(s); load average "
            f"{os.getloadavg()[0]:.1f}"
        )
        base = results["scipy_ks"]
        base_s = statistics.median(base["seconds"])
        base_cpu = statistics.median(base["cpu_seconds"])
        print(
            f"{'implementation':<16}{'median s':>10}{'min s':>8}{'× scipy':>9}{'CPU s':>8}"
            f"{'× scipy':>9}{'peak alloc MB':>15}{'× scipy':>9}{'max RSS MB':>12}{'share':>7}"
            "  methods"
        )
        for implementation, r in results.items():
            median_s = statistics.median(r["seconds"])
            cpu_s = statistics.median(r["cpu_seconds"])
            methods = ", ".join(f"{m} ×{n}" for m, n in r.get("methods", {}).items()) or "ks_2samp"
            print(
                f"{implementation:<16}{median_s:>10.3f}{min(r['seconds']):>8.3f}"
                f"{median_s / base_s:>9.1f}{cpu_s:>8.3f}{cpu_s / base_cpu:>9.1f}"
                f"{r['peak_mb']:>15.1f}{r['peak_mb'] / max(base['peak_mb'], 1e-9):>9.1f}"
                f"{r['max_rss_mb']:>12.0f}{r['share']:>7.2f}  {methods}"
            )
        html, plain = results["evidently_html"], results["evidently"]
        html_extra = statistics.median(html["seconds"]) - statistics.median(plain["seconds"])
        print(
            f"HTML: +{html_extra:.3f} s over evidently without HTML (the preset tests every "
            f"column twice more for its tables), of which save_html "
            f"{statistics.median(html['save_html_seconds']):.3f} s; file "
            f"{html['html_bytes'] / 2**20:.1f} MiB"
        )
        for implementation in ("evidently", "evidently_ks"):
            r = results[implementation]
            wall = statistics.median(r["seconds"]) / base_s
            cpu = statistics.median(r["cpu_seconds"]) / base_cpu
            verdict = "met" if max(wall, cpu) <= GOAL_RATIO else "NOT met"
            print(
                f"goal {implementation} within {GOAL_RATIO:.0f}× of scipy_ks: {verdict} "
                f"(wall {wall:.1f}×, CPU {cpu:.1f}×)"
            )
        agree = results["evidently_ks"]["share"] == base["share"]
        print(
            f"drifted (evidently default): {', '.join(plain['drifted']) or '-'}; "
            f"evidently_ks share {results['evidently_ks']['share']:.2f} vs scipy_ks "
            f"{base['share']:.2f}: {'same' if agree else 'DIFFERENT'}"
        )
    print(
        f"\ntotal {time.perf_counter() - started:.0f} s; load average at end {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
