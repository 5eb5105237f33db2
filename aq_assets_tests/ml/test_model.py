"""`aq_assets.ml.model`: the time split and the forecaster (predictions, saving, the blend, refits, baseline forecasters)."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pandas as pd
import pytest

from aq_assets.ml import model
from aq_assets.ml.evaluation import (
    baseline_forecasts,
    evaluate,
    interval_summary,
    judge_candidate,
)
from aq_assets.ml.features import FeatureSpec, build_features
from aq_assets.ml.model import (
    BLEND_COMPONENTS,
    RHYTHM_LIMITS,
    BlendTable,
    Forecaster,
    TimeSplit,
    baseline_forecaster,
    fit_blend_weights,
    train_forecaster,
    usable_rows,
)
from aq_assets_tests.hourly import START, diurnal, readings

# ---------------------------------------------------------------------------------------------
# TimeSplit


@pytest.mark.parametrize("max_horizon", [1, 24])
def test_time_split_parts_are_ordered_disjoint_and_purged(max_horizon):
    times = pd.date_range("2025-01-01 00:00", "2025-01-30 17:00", freq="h")
    frame = pd.DataFrame(
        {"sensor_id": np.repeat([1, 2], len(times)), "datetime_utc": np.tile(times, 2)}
    )
    split = TimeSplit.last_days(frame["datetime_utc"], holdout_days=5, validation_days=4)

    train, validation, holdout = split.parts(frame, max_horizon)

    assert split.holdout_start == pd.Timestamp("2025-01-31") - pd.Timedelta(days=5)
    assert split.holdout_start - split.validation_start == pd.Timedelta(days=4)
    assert train["datetime_utc"].max() < validation["datetime_utc"].min()
    assert validation["datetime_utc"].max() < holdout["datetime_utc"].min()
    index = [*train.index, *validation.index, *holdout.index]
    assert len(index) == len(set(index))
    reach = pd.Timedelta(hours=max_horizon)
    assert (train["datetime_utc"] + reach < split.validation_start).all()
    assert (validation["datetime_utc"] + reach < split.holdout_start).all()
    assert (holdout["datetime_utc"] >= split.holdout_start).all()
    # Only the rows whose targets cross a boundary are purged.
    t = frame["datetime_utc"]
    crossing = ((t < split.validation_start) & (t + reach >= split.validation_start)) | (
        (t < split.holdout_start) & (t + reach >= split.holdout_start)
    )
    assert len(index) == len(frame) - crossing.sum()


def test_time_split_counts_only_days_with_readings():
    """A sensor offline for the last 10 days of the window: the held-out and validation days
    are the last days it read, not the empty calendar days (which held nothing to judge)."""
    times = pd.Series(pd.date_range("2025-01-01", "2025-01-20 23:00", freq="h"))
    read = times[times < pd.Timestamp("2025-01-11")]

    split = TimeSplit.last_days(read, holdout_days=3, validation_days=2)

    assert split.holdout_start == pd.Timestamp("2025-01-08")
    assert split.validation_start == pd.Timestamp("2025-01-06")
    assert TimeSplit.last_days(times, 3, 2).holdout_start == pd.Timestamp("2025-01-18")
    assert model.days_at_most_a_quarter(read, 14) == 2  # a quarter of 10 days with readings
    with pytest.raises(ValueError, match="No readings"):
        TimeSplit.last_days(read.iloc[:0], 3, 2)


def test_a_window_ending_in_a_long_gap_still_trains_and_is_judged():
    """The sensors read for 20 days, went offline for 9 and came back for the last day: judged
    on the last days with readings (the calendar's last days, nearly all gap, used to leave
    no rows to validate on and the training failed)."""
    hours = 24 * 30
    hourly = pd.concat(
        [
            readings(diurnal(hours, 40, 25, 1.0, seed=11), sensor_id=1),
            readings(diurnal(hours, 25, 15, 1.0, seed=12), sensor_id=2),
        ],
        ignore_index=True,
    )
    offline = hourly["datetime_utc"].between(
        START + pd.Timedelta(days=20), START + pd.Timedelta(days=29), inclusive="left"
    )
    frame = build_features(hourly[~offline], MODEL_SPEC)

    judged = judge_candidate(frame, MODEL_SPEC, holdout_days=3, validation_days=3, max_rounds=50)

    read = judged.holdout.loc[judged.holdout["level"].notna(), "datetime_utc"].dt.floor("D")
    assert read.nunique() == 3  # the day back and the two last days before the gap
    assert judged.validation["level"].notna().sum() > 24
    assert (judged.scores["rows"] > 0).all()


# ---------------------------------------------------------------------------------------------
# Forecaster

MODEL_SPEC = FeatureSpec(horizons=(1, 3)).with_sensors([1, 2])


@pytest.fixture(scope="module")
def trained():
    """40 days of two sensors with a strong daily cycle, a 3-day holdout with a long gap."""
    hours = 24 * 40
    hourly = pd.concat(
        [
            readings(diurnal(hours, 40, 25, 1.0, seed=11), sensor_id=1),
            readings(diurnal(hours, 25, 15, 1.0, seed=12), sensor_id=2),
        ],
        ignore_index=True,
    )
    gap = (hourly["sensor_id"] == 1) & hourly["datetime_utc"].between(
        START + pd.Timedelta(days=38), START + pd.Timedelta(days=38, hours=9)
    )
    frame = build_features(hourly[~gap], MODEL_SPEC)
    split = TimeSplit.last_days(frame["datetime_utc"], holdout_days=3, validation_days=5)
    train, validation, holdout = split.parts(frame, max(MODEL_SPEC.horizons))
    forecaster = train_forecaster(train, validation, MODEL_SPEC, max_rounds=150)
    return forecaster, train, validation, holdout


def test_forecaster_predicts_each_horizon_and_nothing_without_a_level(trained):
    forecaster, _, _, holdout = trained

    predictions = forecaster.predict(holdout)

    assert list(predictions.columns) == [f"h{h}" for h in MODEL_SPEC.horizons]
    assert predictions.index.equals(holdout.index)
    no_level = holdout["level"].isna()
    assert no_level.sum() > 0
    assert predictions[no_level].isna().all().all()
    assert predictions[~no_level].notna().all().all()


def test_saved_forecaster_predicts_the_same(trained, tmp_path):
    forecaster, _, _, holdout = trained

    forecaster.save(tmp_path / "model")
    loaded = Forecaster.load(tmp_path / "model")

    assert loaded.spec == forecaster.spec
    assert loaded.best_iterations == forecaster.best_iterations
    assert loaded.blend_weights == forecaster.blend_weights
    pd.testing.assert_frame_equal(loaded.predict(holdout), forecaster.predict(holdout))


def test_forecaster_beats_persistence_on_a_daily_cycle(trained):
    forecaster, train, validation, holdout = trained
    forecasts = {"model": forecaster.predict(holdout)}
    forecasts.update(baseline_forecasts(holdout, pd.concat([train, validation]), MODEL_SPEC))

    scores = evaluate(holdout, forecasts, MODEL_SPEC).set_index(["forecaster", "horizon"])

    # The cycle moves ~15-25 µg/m³ in 3 hours while the noise is 1 µg/m³.
    assert scores.loc[("model", 3), "rmse"] < 0.5 * scores.loc[("persistence", 3), "rmse"]
    assert scores.loc[("model", 3), "skill"] > 0.5


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ((0.3, 0.0, 0.2), (0.3, 0.0, 0.2)),
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        ((1.5, 0.0, 0.5), (0.75, 0.0, 0.25)),  # over the simplex: scaled back onto it
        ((-1.0, 0.6, 0.0), (0.0, 0.6, 0.0)),  # no negative weight
    ],
)
def test_blend_weights_are_least_squares_within_the_simplex(weights, expected):
    rng = np.random.default_rng(7)
    model = rng.normal(30, 5, 400)
    components = rng.normal(30, 5, (400, 3))
    w = np.array(weights)
    truth = model + (components - model[:, None]) @ w
    model[::10] = np.nan  # rows without a forecast or a component do not count
    components[5::10, 1] = np.nan

    fitted = fit_blend_weights(model, components, truth)

    if all(x >= 0 for x in weights) and sum(weights) <= 1:
        np.testing.assert_allclose(fitted, expected, atol=1e-9)
    else:  # constrained: no negative weight, at most 1 in all, no worse than the obvious guess
        assert (fitted >= 0).all() and fitted.sum() <= 1 + 1e-12

        def loss(w):
            ok = ~(np.isnan(model) | np.isnan(components).any(axis=1))
            blend = model[ok] + (components[ok] - model[ok, None]) @ w
            return float(np.mean((blend - truth[ok]) ** 2))

        assert loss(fitted) <= loss(np.array(expected)) + 1e-9


def test_the_rhythm_carries_the_level_along_the_daily_shape():
    """`rhythm` at origin hour o for target hour t: the level × shape[t] / shape[o], the ratio
    held within RHYTHM_LIMITS; unknown for a sensor the forecaster does not know."""
    shape = np.array([[1.0 + 0.5 * np.sin(2 * np.pi * k / 24) for k in range(24)], [np.nan] * 24])
    shape[0, 5] = 0.01  # an hour whose mean is near zero
    horizons = np.array([1, 3, 24])
    table = BlendTable(horizons, {7: 0}, shape, np.array([20.0, np.nan]), np.zeros((3, 5)), (), 0.0)
    level = np.array([10.0, 10.0, 10.0])
    origin_hours = np.array([2, 4, 2])
    rhythm = BLEND_COMPONENTS.index("rhythm")

    got = table.components(level, np.array([0, 0, 1]), origin_hours, np.ones((3, 2)), (rhythm,))

    targets = (origin_hours[:2, None] + horizons) % 24
    ratio = shape[0, targets] / shape[0, origin_hours[:2]][:, None]
    np.testing.assert_allclose(got[:2, :, 0], 10.0 * np.clip(ratio, *RHYTHM_LIMITS))
    assert got[1, 0, 0] == 10.0 * RHYTHM_LIMITS[0]  # 4 h → 5 h: the near-zero hour, held
    np.testing.assert_allclose(got[0, 2, 0], 10.0)  # 24 h ahead: the same hour, the level
    assert np.isnan(got[2]).all()


@pytest.mark.parametrize(("parameter", "floor"), [("pm25", 0.0), ("bc", -np.inf)])
def test_no_forecast_falls_below_what_cleaning_lets_a_reading_be(parameter, floor):
    """A booster may forecast a fall larger than the level (a clean hour after a dirty one);
    the forecast stops at the parameter's lowest plausible value, none for an unknown one."""
    spec = FeatureSpec(parameter=parameter, horizons=(1, 3))
    table = BlendTable.of(Forecaster(spec=spec))
    level = np.array([2.0, 2.0, np.nan])
    changes = np.array([[-0.5, -3.0], [1.0, -2.5], [1.0, 1.0]], dtype=np.float32)

    got = table.forecast(
        level, changes, table.rows_of([None] * 3), np.zeros(3, int), np.ones((3, 2))
    )

    np.testing.assert_array_equal(got[:2], np.maximum(level[:2, None] + changes[:2], floor))
    assert (got[:2] < 0).any() == (floor < 0)
    assert np.isnan(got[2]).all()


def test_blend_weights_are_zero_when_the_components_add_nothing():
    model = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    components = np.column_stack([model, model, model])

    assert fit_blend_weights(model, components, model + 1.0).tolist() == [0.0, 0.0, 0.0]


def test_a_fit_learns_from_every_usable_row_up_to_the_cap_and_a_seeded_sample_past_it(trained):
    """A booster learns from the rows with a level and a target: all of them up to the cap,
    past it the same uniform sample every time, in the rows' order."""
    _, train, validation, holdout = trained
    frame = pd.concat([train, validation, holdout], ignore_index=True)
    usable = frame[frame["level"].notna() & frame["target_h3"].notna()]
    assert len(usable) < len(frame)  # the gap and the last hours have no level or target

    pd.testing.assert_frame_equal(usable_rows(frame, 3, cap=len(usable)), usable)
    sample = usable_rows(frame, 3, cap=100)
    assert len(sample) == 100
    assert sample.index.isin(usable.index).all() and sample.index.is_monotonic_increasing
    # Spread over the whole period, not its first rows.
    assert sample["datetime_utc"].max() > usable["datetime_utc"].quantile(0.9)
    pd.testing.assert_frame_equal(usable_rows(frame, 3, cap=100), sample)


def test_the_blend_and_the_intervals_are_fitted_on_at_most_the_validation_cap(trained, monkeypatch):
    """Past MAX_VALIDATION_ROWS the blend weights and the intervals come from the seeded
    sample of the rows (`at_most`), the same as if only the sample had been given."""
    forecaster, _, validation, holdout = trained
    rows = pd.concat([validation, holdout])
    cap = len(rows) * 3 // 4
    monkeypatch.setattr(model, "MAX_VALIDATION_ROWS", cap)
    sample = model.at_most(rows, cap)
    assert len(sample) == cap < len(rows)

    assert forecaster.blended_on(validation, holdout).blend_weights == (
        forecaster.blended_on(sample).blend_weights
    )

    def intervals(*frames: pd.DataFrame) -> dict:
        fitted = forecaster.calibrated(*frames).intervals
        assert fitted is not None
        return fitted.to_dict()

    assert intervals(validation, holdout) == intervals(sample)
    assert intervals(rows.iloc[:cap]) != intervals(sample)


def test_refit_learns_the_newest_day(trained):
    """The registered model is trained on every row: change only the last day's values
    and its forecasts change; the settings chosen on validation stay."""
    forecaster, train, validation, holdout = trained
    frame = pd.concat([train, validation])
    last_day = frame["datetime_utc"] >= frame["datetime_utc"].max().floor("D")
    changed = frame.copy()
    for column in ["y", *MODEL_SPEC.target_columns]:
        changed.loc[last_day, column] = changed.loc[last_day, column] * 1.5
    base = forecaster.refit(frame)
    moved = forecaster.refit(changed)

    assert moved.best_iterations == base.best_iterations
    assert moved.blend_weights == base.blend_weights
    assert not np.allclose(
        moved.predict(holdout).to_numpy(), base.predict(holdout).to_numpy(), equal_nan=True
    )


def test_the_registered_version_is_the_candidate_trained_on_every_row(trained):
    """What a passed training registers: the judged candidate's rounds (chosen on the
    validation days before the held-out days) and its blend fitted again on the validation
    and held-out days, trained again on every row, so it learns the held-out days too: the
    same as training on the earlier rows, blending and refitting by hand."""
    _, train, validation, holdout = trained
    frame = pd.concat([train, validation, holdout])

    judged = judge_candidate(frame, MODEL_SPEC, holdout_days=3, validation_days=5, max_rounds=150)
    registered = judged.on_every_day(frame)
    split = TimeSplit.last_days(frame["datetime_utc"], holdout_days=3, validation_days=5)
    earlier, later, held_out = split.parts(frame, max(MODEL_SPEC.horizons))
    candidate = train_forecaster(earlier, later, MODEL_SPEC, max_rounds=150)
    by_hand = candidate.blended_on(later, held_out).refit(frame)

    assert registered.best_iterations == judged.candidate.best_iterations
    assert registered.blend_weights == by_hand.blend_weights != candidate.blend_weights
    pd.testing.assert_frame_equal(registered.predict(holdout), by_hand.predict(holdout))
    assert not np.allclose(
        registered.predict(holdout).to_numpy(),
        judged.candidate.predict(holdout).to_numpy(),
        equal_nan=True,
    )


def test_the_registered_version_is_calibrated_on_the_validation_and_held_out_days(trained):
    """Its intervals come from the (re-blended) candidate's errors on both windows its boosters
    did not learn from; the candidate keeps its own (validation days only)."""
    _, train, validation, holdout = trained
    frame = pd.concat([train, validation, holdout])
    # 8 validation days: enough rows (MIN_CALIBRATION_ROWS) for the candidate's own intervals
    judged = judge_candidate(frame, MODEL_SPEC, holdout_days=3, validation_days=8, max_rounds=150)
    own = judged.candidate.intervals
    assert own is not None

    registered = judged.on_every_day(frame)
    by_hand = (
        judged.candidate.blended_on(judged.validation, judged.holdout)
        .calibrated(judged.validation, judged.holdout)
        .intervals
    )

    assert registered.intervals is not None and by_hand is not None
    assert registered.intervals.to_dict() == by_hand.to_dict()
    assert registered.intervals.to_dict() != own.to_dict()
    assert judged.candidate.intervals is own  # calibrating makes a copy


def test_baseline_forecaster_forecasts_the_chosen_baseline(trained):
    _, train, validation, holdout = trained
    history = pd.concat([train, validation])
    choice = {h: ("persistence" if h <= 3 else "climatology") for h in MODEL_SPEC.horizons}

    baseline = baseline_forecaster(history, MODEL_SPEC, choice)
    forecasts = baseline.predict(holdout)
    expected = baseline_forecasts(holdout, history, MODEL_SPEC)

    assert baseline.is_baseline and set(BLEND_COMPONENTS) >= {"persistence", "climatology"}
    rows = holdout["level"].notna()
    for h in MODEL_SPEC.horizons:
        np.testing.assert_allclose(
            forecasts.loc[rows, f"h{h}"], expected[choice[h]].loc[rows, f"h{h}"], rtol=1e-9
        )


# ---------------------------------------------------------------------------------------------
# Fits at scale


def test_fit_workers_follow_omp_num_threads_else_the_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert model.fit_workers() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert model.fit_workers() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert model.fit_workers() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("threads", ["1", "2"])
def test_horizons_are_fitted_fit_workers_at_a_time(monkeypatch, threads):
    """One worker fits in the calling thread; more fit side by side in threads of their own."""
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    started = threading.Barrier(int(threads), timeout=10)

    def fit(h: int) -> int:
        started.wait()  # returns only once `threads` fits are running at the same time
        return threading.get_ident()

    fitted = model.by_horizon([24, 1, 3, 6], fit)

    assert list(fitted) == [24, 1, 3, 6]
    assert (threading.get_ident() in fitted.values()) == (threads == "1")


def test_boosters_fitted_side_by_side_are_those_fitted_one_at_a_time(trained, monkeypatch):
    """Each booster is fitted on one thread whatever OMP_NUM_THREADS is, so the forecasts of
    the candidate and of its refit do not move when the horizons are fitted in parallel."""
    _, train, validation, holdout = trained
    frame = pd.concat([train, validation])

    def fitted(threads: str) -> tuple[Forecaster, Forecaster]:
        monkeypatch.setenv("OMP_NUM_THREADS", threads)
        candidate = train_forecaster(train, validation, MODEL_SPEC, max_rounds=150)
        return candidate, candidate.refit(frame)

    for alone, side_by_side in zip(fitted("1"), fitted("2"), strict=True):
        assert list(side_by_side.boosters) == list(alone.boosters) == list(MODEL_SPEC.horizons)
        assert side_by_side.best_iterations == alone.best_iterations
        pd.testing.assert_frame_equal(side_by_side.predict(holdout), alone.predict(holdout))


def test_a_large_network_is_fitted_with_a_longer_step_and_sensor_code_as_a_number(
    trained, monkeypatch
):
    """Every real set (at most 20 sensors) is fitted with DEFAULT_PARAMS and `sensor_code` as
    a category; a network of more than LARGE_NETWORK sensors with LARGE_NETWORK_PARAMS and
    `sensor_code` as a number."""
    _, train, validation, _ = trained
    twenty = FeatureSpec().with_sensors(list(range(20)))
    large = FeatureSpec().with_sensors(list(range(model.LARGE_NETWORK + 1)))
    assert model.booster_params(twenty) == model.DEFAULT_PARAMS
    assert model.booster_params(large)["eta"] == 0.1 > model.DEFAULT_PARAMS["eta"]
    assert model.feature_types(twenty)[twenty.feature_columns.index("sensor_code")] == "c"
    assert set(model.feature_types(large)) == {"q"}

    def fitted() -> tuple[str, str]:
        booster = train_forecaster(train, validation, MODEL_SPEC, max_rounds=5).boosters[1]
        code = booster.feature_types[MODEL_SPEC.feature_columns.index("sensor_code")]
        return code, json.loads(booster.save_config())["learner"]["gradient_booster"][
            "tree_train_param"
        ]["eta"]

    assert fitted() == ("c", "0.0299999993")
    monkeypatch.setattr(model, "LARGE_NETWORK", len(MODEL_SPEC.sensors) - 1)
    assert fitted() == ("q", "0.100000001")


def test_the_gate_judges_the_intervals_cross_fitted_over_both_fortnights(trained):
    """Calibrated on the validation days and scored on the held-out ones, and the other way
    round: the registered version is calibrated on both."""
    _, train, validation, holdout = trained
    frame = pd.concat([train, validation, holdout])
    judged = judge_candidate(frame, MODEL_SPEC, holdout_days=8, validation_days=8, max_rounds=50)
    other = judged.candidate.calibrated(judged.holdout)
    assert other.intervals is not None

    one_way = interval_summary([(judged.candidate, judged.holdout, judged.point)])
    other_way = interval_summary([(other, judged.validation, other.predict(judged.validation))])
    both = judged.intervals

    assert (both["rows"] == one_way["rows"] + other_way["rows"]).all()
    assert (both["coverage_days"] == one_way["coverage_days"] + other_way["coverage_days"]).all()
    for column in ("coverage80", "coverage90", "pinball"):
        weighted = one_way[column] * one_way["rows"] + other_way[column] * other_way["rows"]
        np.testing.assert_allclose(both[column], weighted / both["rows"])
