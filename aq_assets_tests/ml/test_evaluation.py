"""`aq_assets.ml.evaluation`: the baselines and scoring every forecaster on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aq_assets.ml.evaluation import (
    BASELINES,
    MIN_TRAINING_DAYS,
    baseline_forecasts,
    daily_scores,
    evaluate,
    judge_candidate,
)
from aq_assets.ml.features import FeatureSpec, build_features
from aq_assets_tests.hourly import START, diurnal, location_series, readings

# ---------------------------------------------------------------------------------------------
# Baselines and evaluation


@pytest.fixture(scope="module")
def scored_frame():
    spec = FeatureSpec(horizons=(1, 3, 24)).with_sensors([1, 2])
    frame = build_features(location_series(24 * 10, seed=21), spec)
    cut = START + pd.Timedelta(days=7)
    return spec, frame[frame["datetime_utc"] < cut], frame[frame["datetime_utc"] >= cut]


def test_baseline_forecasts_follow_their_definitions(scored_frame):
    spec, train, frame = scored_frame

    baselines = baseline_forecasts(frame, train, spec)

    assert set(baselines) == set(BASELINES)
    y = frame.set_index(["sensor_id", "datetime_utc"])["y"]
    climate = {
        key: values.mean()
        for key, values in train.groupby(["sensor_id", train["datetime_utc"].dt.hour])["y"]
    }
    for h in spec.horizons:
        np.testing.assert_array_equal(
            baselines["persistence"][f"h{h}"].to_numpy(), frame["level"].to_numpy()
        )
        back = pd.Timedelta(hours=24 - h)
        yesterday = [
            y.get((sensor, t - back), np.nan)
            for sensor, t in zip(frame["sensor_id"], frame["datetime_utc"], strict=True)
        ]
        np.testing.assert_array_equal(baselines["same_hour_yesterday"][f"h{h}"], yesterday)
        climatology = [
            climate[(sensor, (t + pd.Timedelta(hours=h)).hour)]
            for sensor, t in zip(frame["sensor_id"], frame["datetime_utc"], strict=True)
        ]
        np.testing.assert_allclose(baselines["climatology"][f"h{h}"], climatology, rtol=1e-12)
    assert baselines["same_hour_yesterday"]["h3"].notna().sum() > len(frame) / 2


def test_evaluate_scores_every_forecaster_on_the_same_rows(scored_frame):
    spec, train, frame = scored_frame
    forecasts = baseline_forecasts(frame, train, spec)
    model = pd.DataFrame({f"h{h}": frame[f"target_h{h}"] + 1.0 for h in spec.horizons})
    model.iloc[::7] = np.nan  # the model abstains on rows the baselines do forecast
    forecasts["model"] = model

    scores = evaluate(frame, forecasts, spec)

    assert len(scores) == len(forecasts) * len(spec.horizons)
    for h, rows in scores.groupby("horizon"):
        valid = frame[f"target_h{h}"].notna()
        for forecast in forecasts.values():
            valid &= forecast[f"h{h}"].notna()
        assert rows["rows"].tolist() == [int(valid.sum())] * len(forecasts)
        assert 0 < valid.sum() < len(frame)
        by_name = rows.set_index("forecaster")
        error = forecasts["persistence"].loc[valid, f"h{h}"] - frame.loc[valid, f"target_h{h}"]
        persistence_rmse = float(np.sqrt((error**2).mean()))
        assert by_name.loc["persistence", "rmse"] == pytest.approx(persistence_rmse)
        assert by_name.loc["model", "rmse"] == pytest.approx(1.0)
        np.testing.assert_allclose(by_name["skill"], 1 - by_name["rmse"] / persistence_rmse)
        assert by_name.loc["persistence", "skill"] == pytest.approx(0.0)


def test_daily_scores_pool_back_to_the_scores_of_the_whole_period(scored_frame):
    spec, train, frame = scored_frame
    forecasts = baseline_forecasts(frame, train, spec)

    daily = daily_scores(frame, forecasts, spec)
    scores = evaluate(frame, forecasts, spec).set_index(["forecaster", "horizon"])

    assert daily["day"].nunique() == frame["datetime_utc"].dt.floor("D").nunique() == 3
    sums = (
        daily.assign(sse=daily["rmse"] ** 2 * daily["rows"])
        .groupby(["forecaster", "horizon"])[["sse", "rows"]]
        .sum()
    )
    np.testing.assert_array_equal(sums["rows"], scores.loc[sums.index, "rows"])
    np.testing.assert_allclose(
        np.sqrt(sums["sse"] / sums["rows"]), scores.loc[sums.index, "rmse"], rtol=1e-9
    )


@pytest.mark.parametrize("days", [MIN_TRAINING_DAYS - 1, MIN_TRAINING_DAYS])
def test_min_training_days_is_the_fewest_a_candidate_trains_on(days):
    hourly = pd.concat(
        [
            readings(diurnal(24 * days, 40, 25, 1.0, seed=11), sensor_id=1),
            readings(diurnal(24 * days, 25, 15, 1.0, seed=12), sensor_id=2),
        ],
        ignore_index=True,
    )
    frame = build_features(hourly, FeatureSpec().with_sensors([1, 2]))
    spec = FeatureSpec.of_training_set(frame, "pm25")

    if days < MIN_TRAINING_DAYS:
        with pytest.raises(ValueError, match="too few days with readings"):
            judge_candidate(frame, spec, max_rounds=20)
    else:
        assert judge_candidate(frame, spec, max_rounds=20).candidate.boosters
