"""Rolling-origin backtests (aq_assets/ml/backtest.py): origins, what a fit may see, pooling."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from aq_assets.ml.backtest import (
    backtest,
    origins_table,
    pooled_distribution,
    pooled_rmse,
    rolling_origins,
    summary,
)
from aq_assets.ml.evaluation import loss_differential
from aq_assets.ml.features import FeatureSpec, build_features
from aq_assets.ml.model import Forecaster, baseline_forecaster

SPEC = FeatureSpec(horizons=(1, 3)).with_sensors([1])
START = pd.Timestamp("2025-01-01")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """60 days of one sensor: a daily cycle and noise."""
    hours = pd.date_range(START, periods=60 * 24, freq="h")
    rng = np.random.default_rng(3)
    hourly = pd.DataFrame(
        {
            "sensor_id": 1,
            "location_id": 10,
            "parameter": "pm25",
            "datetime_utc": hours,
            "value": 20 + 8 * np.sin(2 * np.pi * hours.hour / 24) + rng.normal(0, 2, len(hours)),
        }
    )
    return build_features(hourly, SPEC)


def test_origins_leave_history_before_and_a_whole_test_period_after(frame):
    origins = rolling_origins(frame["datetime_utc"], min_train_days=14, step_days=7, test_days=7)

    assert origins[0] == START + pd.Timedelta(days=14)
    assert all(b - a == pd.Timedelta(days=7) for a, b in itertools.pairwise(origins))
    assert origins[-1] + pd.Timedelta(days=7) <= frame["datetime_utc"].max()
    assert rolling_origins(frame["datetime_utc"], 59, 7, 7) == []


def test_a_fit_sees_only_the_window_before_its_origin_and_no_target_after_it(frame):
    seen: list[pd.DataFrame] = []

    def fit(history: pd.DataFrame, spec: FeatureSpec) -> Forecaster:
        seen.append(history)
        return baseline_forecaster(history, spec, {1: "persistence", 3: "persistence"})

    origins = [START + pd.Timedelta(days=30), START + pd.Timedelta(days=40)]
    sums = backtest(frame, SPEC, origins, fit, window_days=20, test_days=10)

    for origin, history in zip(origins, seen, strict=True):
        assert history["datetime_utc"].max() < origin
        assert history["datetime_utc"].min() >= origin - pd.Timedelta(days=20)
        for h in SPEC.horizons:
            known = history[f"target_h{h}"].notna()
            assert (history.loc[known, "datetime_utc"] + pd.Timedelta(hours=h) < origin).all()
            assert known.sum() > 0
    # The model IS persistence here: the same errors, row for row.
    model = sums[sums.forecaster == "model"].set_index(["origin", "season", "horizon"])
    persistence = sums[sums.forecaster == "persistence"].set_index(["origin", "season", "horizon"])
    pd.testing.assert_frame_equal(model[["n", "sse", "sae"]], persistence[["n", "sse", "sae"]])


def test_pooled_rmse_pools_squared_errors_not_rmses():
    sums = pd.DataFrame(
        {
            "origin": ["a", "a", "b", "b", "a", "a", "b", "b"],
            "season": "DJF",
            "horizon": 1,
            "forecaster": ["model"] * 4 + ["persistence"] * 4,
            "n": [1, 0, 3, 0, 1, 0, 3, 0],
            "sse": [4.0, 0.0, 12.0, 0.0, 16.0, 0.0, 12.0, 0.0],
            "sae": [2.0, 0.0, 6.0, 0.0, 4.0, 0.0, 6.0, 0.0],
        }
    )
    sums = pd.concat(
        [sums, sums[sums.forecaster == "persistence"].assign(forecaster="climatology", sse=99.0)]
    )

    pooled = pooled_rmse(sums, [])

    assert pooled.loc[1, "model"] == pytest.approx(np.sqrt(16 / 4))
    assert pooled.loc[1, "persistence"] == pytest.approx(np.sqrt(28 / 4))
    assert pooled.loc[1, "best_baseline"] == pooled.loc[1, "persistence"]
    assert pooled.loc[1, "skill_vs_best"] == pytest.approx(1 - 2 / np.sqrt(7))
    per_origin = summary(sums)
    assert per_origin["origins"] == 2
    assert per_origin["origins_within_tolerance"] == 1.0  # a: 2 vs 4, b: 2 vs 2
    assert "pooled" in origins_table(sums)


def daily_scores(champion_rmse: list[float], persistence_rmse: float = 4.0) -> pd.DataFrame:
    """forecast_accuracy's rows for one horizon: the champion, persistence, climatology."""
    days = pd.date_range("2025-06-01", periods=len(champion_rmse), freq="D")
    rows = []
    for day, rmse in zip(days, champion_rmse, strict=True):
        for name, value in (
            ("champion", rmse),
            ("persistence", persistence_rmse),
            ("climatology", 9.0),
        ):
            rows.append({"day": day, "horizon": 1, "forecaster": name, "rmse": value, "rows": 100})
    return pd.DataFrame(rows)


def test_a_champion_worse_than_persistence_day_after_day_is_worse_with_evidence():
    rng = np.random.default_rng(0)
    verdict = loss_differential(daily_scores(list(4.6 + rng.normal(0, 0.2, 10)))).iloc[0]
    assert verdict["best_baseline"] == "persistence" and verdict["days"] == 10
    assert verdict["worse"] and verdict["p_value"] < 0.01 and verdict["skill_vs_best"] < -0.1


@pytest.mark.parametrize(
    "champion",
    [
        [3.5] * 9 + [12.0],  # one terrible day among good ones: weather, not evidence
        [4.6, 4.8, 4.5, 4.7, 4.9, 4.6],  # consistently worse, but fewer days than min_days
        [3.6, 3.5, 3.7, 3.4, 3.6, 3.5, 3.8, 3.6],  # better
    ],
)
def test_no_evidence_is_not_worse(champion):
    assert not loss_differential(daily_scores(champion), min_days=7).iloc[0]["worse"]


def test_pooled_coverage_leaves_out_origins_without_intervals():
    """An origin whose forecaster has no intervals has rows but no scores: they count neither
    as covered nor as missed."""
    with_intervals = {"n": 10, "scored": 10, "covered80": 8, "covered90": 9, "width80": 20.0}
    without = {"n": 30}
    sums = pd.DataFrame(
        [
            {"origin": 1, "horizon": 1, "forecaster": "model", "width90": 30.0, "pinball": 1.0}
            | with_intervals,
            {"origin": 2, "horizon": 1, "forecaster": "model"} | without,
        ]
    )

    pooled = pooled_distribution(sums, [])

    assert pooled.loc[1, "coverage80"] == pytest.approx(0.8)
    assert pooled.loc[1, "coverage90"] == pytest.approx(0.9)
    assert pooled.loc[1, "width80"] == pytest.approx(2.0)
