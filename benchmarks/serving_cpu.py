"""CPU time of one forecast request inside the service's process, by request kind: reading
the body, checks, cleaning, features, the model and the JSON answer, without HTTP.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serving_cpu.py --aq-home DIR [--repo DIR]
        [--trees walker|xgboost] [--reader loops|msgspec]

The same bodies as `serving_vs_mlflow.py` (built from DIR's snapshot and champion, see there;
DIR must hold them: run that benchmark or `aq up --no-ui` first). CPU time of the process
(time.process_time), the least of 5 rounds of ~0.6 s each: on a shared machine this moves far
less than wall time and needs no server. `--repo` measures another checkout's `serving` and
`aq_assets` (e.g. `git worktree add /tmp/before <commit>`) with the same bodies and model, so
two versions compare in one sitting; run them in turns, a few times. `--trees xgboost` and
`--reader msgspec` measure what the service would cost with the maintained library in place
of its hand-written loops (XGBoost's predict; msgspec's typed decoding and numpy's parsing).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

KINDS = "post-full,post-target,post-1h,batch-full,batch-target,batch-1h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--aq-home", required=True)
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--kinds", default=KINDS)
    parser.add_argument(
        "--trees",
        choices=["walker", "xgboost"],
        default="walker",
        help="xgboost: XGBoost's inplace_predict per horizon instead of the compiled walk",
    )
    parser.add_argument(
        "--reader",
        choices=["loops", "msgspec"],
        default="loops",
        help="msgspec: msgspec's typed decoding of every list instead of the compiled readers",
    )
    args = parser.parse_args()
    repo = Path(args.repo).resolve()
    home = Path(args.aq_home).resolve()
    here = Path(__file__).resolve().parent
    # The measured checkout's packages first; the bodies come from this checkout's benchmark.
    sys.path[:0] = [str(repo), str(here)]
    os.environ["AQ_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"

    from serving_vs_mlflow import our_bodies

    from serving import forecasting
    from serving.metrics import ServiceMetrics
    from serving.settings import Settings
    from serving.state import ServingState

    if args.trees == "xgboost":
        from serving.trees import TreeEnsemble

        def refuse(boosters: object) -> None:
            raise ValueError("benchmark: XGBoost's own predict")

        TreeEnsemble.from_boosters = refuse  # type: ignore[method-assign,assignment]
    if args.reader == "msgspec":
        from serving import readings

        readings._compiled_read = lambda *_: None  # type: ignore[assignment]
    settings = Settings(api_open=True)
    state = ServingState(settings, ServiceMetrics())
    state.refresh()
    model = state.model
    if model is None:
        raise SystemExit(f"no champion in {home}: run `aq up --no-ui` there first")
    spec = model.spec
    info = {
        "parameter": spec.parameter,
        "history_hours": spec.history_hours,
        "covariates": list(spec.covariates),
    }
    bodies, _ = our_bodies(home, info)
    gc.freeze()  # as the service's lifespan does once the model is loaded
    from serving import app

    getattr(app, "keep_freed_memory", lambda: None)()  # and this (not in older checkouts)
    read = getattr(forecasting, "read_request", None)
    if read is None:  # before the msgspec reader: FastAPI's pydantic model
        from serving.schemas import ForecastRequest

        read = ForecastRequest.model_validate_json

    def answer(body: bytes) -> bytes:
        return forecasting.request_answer(model, read(body), settings)

    print(
        f"{repo} ({len(model.forecaster.horizons)} horizons, {spec.parameter}; trees: "
        f"{'compiled walk' if getattr(model.forecaster, 'compiled', False) else 'XGBoost'}, "
        f"reader: {args.reader})"
    )
    for kind in args.kinds.split(","):
        body = bodies[kind]
        start = time.process_time()
        answer(body)
        once = max(time.process_time() - start, 1e-4)
        n = max(3, int(0.6 / once))
        rounds = []
        for _ in range(5):
            start = time.process_time()
            for _ in range(n):
                answer(body)
            rounds.append((time.process_time() - start) / n)
        print(f"  {kind:13s} {len(body) / 1024:9.1f} KiB  {min(rounds) * 1e3:9.3f} ms CPU")
    gc.unfreeze()  # what is frozen is never freed, and extension modules say so at exit


if __name__ == "__main__":
    main()
