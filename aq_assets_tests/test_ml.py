"""The pure ML functions: cleaning, features without leakage, the time split, the forecaster,
the baselines it must beat, and the promotion gate's decision. Small synthetic frames only."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from aq_assets.defs.model.gate import decide
from aq_assets.ml.cleaning import clean_readings, stuck_hours, without_stuck
from aq_assets.ml.evaluation import BASELINES, baseline_forecasts, evaluate
from aq_assets.ml.features import PROFILE_DAYS, FeatureSpec, build_features
from aq_assets.ml.model import (
    BLEND_COMPONENTS,
    Forecaster,
    TimeSplit,
    baseline_forecaster,
    fit_blend_weights,
    fit_forecaster,
    train_forecaster,
)

START = pd.Timestamp("2025-03-01 00:00")
UG = "µg/m³"


def readings(
    values,
    *,
    sensor_id: int = 1,
    location_id: int = 10,
    parameter: str = "pm25",
    units: str = UG,
    start: pd.Timestamp = START,
) -> pd.DataFrame:
    """Hourly readings of one sensor from `start`; None/NaN values are null readings."""
    values = np.asarray(values, dtype="float64")
    return pd.DataFrame(
        {
            "sensor_id": sensor_id,
            "location_id": location_id,
            "parameter": parameter,
            "units": units,
            "datetime_utc": pd.date_range(start, periods=len(values), freq="h"),
            "value": values,
        }
    )


def diurnal(hours: int, base: float, amplitude: float, noise: float, seed: int) -> np.ndarray:
    """A daily cycle peaking at 06:00 UTC, plus Gaussian noise."""
    hour = pd.date_range(START, periods=hours, freq="h").hour.to_numpy()
    rng = np.random.default_rng(seed)
    return base + amplitude * np.sin(2 * np.pi * hour / 24) + rng.normal(0, noise, hours)


def location_series(hours: int, seed: int = 0) -> pd.DataFrame:
    """Cleaned hourly values at location 10: pm25 sensors 1 and 2, and a pm10 sensor 3."""
    return pd.concat(
        [
            readings(diurnal(hours, 30, 12, 2, seed), sensor_id=1),
            readings(diurnal(hours, 20, 8, 2, seed + 1), sensor_id=2),
            readings(diurnal(hours, 45, 15, 3, seed + 2), sensor_id=3, parameter="pm10"),
        ],
        ignore_index=True,
    )


def at(frame: pd.DataFrame, sensor_id: int, when: pd.Timestamp) -> pd.Series:
    """The single row of `frame` for a sensor at an hour."""
    rows = frame[(frame["sensor_id"] == sensor_id) & (frame["datetime_utc"] == when)]
    assert len(rows) == 1, f"expected one row for sensor {sensor_id} at {when}, got {len(rows)}"
    return rows.iloc[0]


# ---------------------------------------------------------------------------------------------
# clean_readings


@pytest.mark.parametrize(
    ("parameter", "units", "values", "expected", "counts"),
    [
        pytest.param("pm25", UG, [10, None, 12], [10, None, 12], {"null_values": 1}, id="null"),
        pytest.param("pm25", UG, [10, -999, 12], [10, None, 12], {"sentinels": 1}, id="sentinel"),
        pytest.param(
            "pm25", UG, [10, 5000, 12], [10, None, 12], {"implausible": 1}, id="implausible"
        ),
        pytest.param(
            "pm25", UG, [10, -3, 12], [10, 0, 12], {"negatives_clipped": 1}, id="small-negative"
        ),
        # Beyond the 10 µg/m³ noise tolerance a negative is not noise but a broken reading.
        pytest.param(
            "pm25", UG, [10, -15, 12], [10, None, 12], {"implausible": 1}, id="big-negative"
        ),
        pytest.param("bc", UG, [-5, 5000, 12], [-5, 5000, 12], {}, id="unknown-parameter"),
        pytest.param("pm25", "ppb", [-5, 5000, 12], [-5, 5000, 12], {}, id="unknown-units"),
    ],
)
def test_clean_readings_rules(parameter, units, values, expected, counts):
    """`expected` is the cleaned value of each reading, None where it is dropped."""
    raw = readings(values, parameter=parameter, units=units)

    hourly, report = clean_readings(raw)

    kept = [i for i, v in enumerate(expected) if v is not None]
    assert hourly["value"].tolist() == [float(expected[i]) for i in kept]
    assert hourly["datetime_utc"].tolist() == raw.loc[kept, "datetime_utc"].tolist()
    rules = ("null_values", "sentinels", "implausible", "negatives_clipped", "spikes")
    assert {rule: getattr(report, rule) for rule in rules} == {
        rule: counts.get(rule, 0) for rule in rules
    }
    assert report.rows_in == len(values)
    assert report.hours_out == len(kept)


def test_clean_readings_averages_readings_within_an_hour():
    raw = readings([8, 20, 30])
    raw.loc[2, "datetime_utc"] = raw.loc[1, "datetime_utc"] + pd.Timedelta(minutes=20)

    hourly, report = clean_readings(raw)

    assert hourly["datetime_utc"].tolist() == raw["datetime_utc"].dt.floor("h").unique().tolist()
    assert hourly["value"].tolist() == [8.0, (20.0 + 30.0) / 2]
    assert report.repeated_hours == 1
    assert report.hours_out == 2


def test_clean_readings_drops_an_isolated_spike():
    day = [10.0 + (i % 3) for i in range(24)]  # a quiet day around 10 µg/m³
    raw = readings([*day, 600.0, *day[:3]])

    hourly, report = clean_readings(raw)

    spike_hour = raw.loc[24, "datetime_utc"]
    assert spike_hour not in set(hourly["datetime_utc"])
    assert report.spikes == 1
    assert len(hourly) == len(raw) - 1
    assert (hourly["value"] < 600).all()


# A 12-hour build-up barely moves the preceding 24 h median; the rule must also look at the
# hours just before the reading, or the top of every fast episode is dropped as "spikes".
def test_clean_readings_keeps_a_gradual_episode():
    rising = np.linspace(10, 300, 13)[1:]  # 10 -> 300 over 12 hours, ~24 µg/m³ per hour
    raw = readings([10.0] * 24 + list(rising))

    hourly, report = clean_readings(raw)

    assert report.spikes == 0
    assert hourly["value"].tolist() == raw["value"].tolist()


# ---------------------------------------------------------------------------------------------
# build_features

LEAKAGE_SPEC = FeatureSpec(horizons=(1, 3, 24)).with_sensors([1, 2])


@pytest.mark.parametrize("hours_in", [30, 130, 200])
def test_features_at_t_do_not_depend_on_anything_after_t(hours_in):
    t = START + pd.Timedelta(hours=hours_in)
    hourly = location_series(240)
    # Gaps reaching t in sensor 1 and in pm10: a fill from the next reading would leak.
    gap = hourly["sensor_id"].isin([1, 3]) & hourly["datetime_utc"].between(
        t - pd.Timedelta(hours=1), t
    )
    hourly = hourly[~gap].reset_index(drop=True)
    later = hourly["datetime_utc"] > t
    assert set(hourly.loc[later, "parameter"]) == {"pm25", "pm10"}
    wild = hourly.copy()
    wild.loc[later, "value"] = 5000 + np.random.default_rng(1).uniform(0, 1000, later.sum())

    base = build_features(hourly, LEAKAGE_SPEC)
    changed = build_features(wild, LEAKAGE_SPEC)

    columns = LEAKAGE_SPEC.feature_columns
    upto = base["datetime_utc"] <= t
    assert upto.sum() == 2 * (hours_in + 1)
    assert base[["sensor_id", "datetime_utc"]].equals(changed[["sensor_id", "datetime_utc"]])
    # A feature column that is never defined could not reveal anything.
    assert base.loc[upto, ["level", "pm10_now", "mean_24", "same_hour_7d_h3"]].notna().any().all()
    pd.testing.assert_frame_equal(base.loc[upto, columns], changed.loc[upto, columns])
    # ...while the targets at t do see the change, so the comparison above can fail.
    for sensor_id in (1, 2):
        for target in LEAKAGE_SPEC.target_columns:
            before, after = at(base, sensor_id, t)[target], at(changed, sensor_id, t)[target]
            assert after >= 5000 > before, (sensor_id, target)


def test_a_missing_hour_stays_missing():
    spec = FeatureSpec(horizons=(1, 3), max_fill_hours=3).with_sensors([1])
    values = diurnal(48, 30, 10, 1, seed=3)
    values[20] = np.nan  # one hour missing
    values[30:36] = np.nan  # six hours missing, longer than max_fill_hours
    raw = readings(values)
    hourly = raw.dropna(subset=["value"])

    frame = build_features(hourly, spec)

    assert frame["datetime_utc"].tolist() == raw["datetime_utc"].tolist()
    np.testing.assert_array_equal(frame["y"].to_numpy(), values)
    for h in spec.horizons:
        expected_target = np.append(values[h:], [np.nan] * h)
        np.testing.assert_array_equal(frame[f"target_h{h}"].to_numpy(), expected_target)
        assert np.isnan(frame.loc[20 - h, f"target_h{h}"])
    assert np.isnan(frame.loc[21, "lag_1"])
    # The level carries the last reading for at most max_fill_hours, then is unknown.
    last = values[29]
    assert frame.loc[30:32, "level"].tolist() == [last] * 3
    assert frame.loc[30:32, "hours_since_reading"].tolist() == [1.0, 2.0, 3.0]
    assert frame.loc[33:35, "level"].isna().all()
    assert frame.loc[33:35, "hours_since_reading"].isna().all()
    assert frame.loc[36, "level"] == values[36]
    assert frame.loc[20, "level"] == values[19]


def test_features_at_the_forecast_origin_match_training_features():
    spec = FeatureSpec(horizons=(1, 3, 6, 24)).with_sensors([1, 2])
    hourly = location_series(24 * 20, seed=5)
    origin = START + pd.Timedelta(days=16, hours=13)
    timezones = {10: "America/Mexico_City"}

    full = build_features(hourly, spec, timezones)
    served = build_features(hourly, spec, timezones, until=origin)
    history_only = build_features(
        hourly[hourly["datetime_utc"] <= origin], spec, timezones, until=origin
    )

    assert served.groupby("sensor_id")["datetime_utc"].max().eq(origin).all()
    hours = int((origin - START) / pd.Timedelta(hours=1)) + 1
    assert len(served) == 2 * hours
    profiles = [c for c in spec.feature_columns if c.startswith("same_hour_")]
    assert len(profiles) == len(PROFILE_DAYS) * len(spec.horizons)
    columns = ["sensor_id", "datetime_utc", *spec.feature_columns]
    expected = full.loc[full["datetime_utc"] == origin, columns].reset_index(drop=True)
    assert expected[profiles].notna().all().all()
    for frame in (served, history_only):
        at_origin = frame.loc[frame["datetime_utc"] == origin, columns].reset_index(drop=True)
        pd.testing.assert_frame_equal(at_origin, expected)
        # Nothing after the origin is seen: its targets are unknown.
        assert frame.loc[frame["datetime_utc"] == origin, spec.target_columns].isna().all().all()


def test_forecast_origin_after_the_last_reading_carries_the_level():
    spec = FeatureSpec(horizons=(1, 3), max_fill_hours=3).with_sensors([1])
    hourly = readings(diurnal(72, 30, 10, 1, seed=4))
    last = hourly.iloc[-1]

    frame = build_features(hourly, spec, until=last["datetime_utc"] + pd.Timedelta(hours=2))

    assert frame["datetime_utc"].iloc[-1] == last["datetime_utc"] + pd.Timedelta(hours=2)
    assert frame["level"].iloc[-2:].tolist() == [last["value"]] * 2
    assert frame["hours_since_reading"].iloc[-2:].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("timezone", "zone"),
    [
        ("+05:30", dt.timezone(dt.timedelta(hours=5, minutes=30))),
        ("-03:00", dt.timezone(dt.timedelta(hours=-3))),
        ("America/Mexico_City", ZoneInfo("America/Mexico_City")),
        ("Europe/Berlin", ZoneInfo("Europe/Berlin")),  # crosses the DST switch on 2025-03-30
    ],
)
def test_calendar_features_use_local_time(timezone, zone):
    spec = FeatureSpec(horizons=(1,)).with_sensors([1, 2])
    start = pd.Timestamp("2025-03-29 00:00")
    hourly = pd.concat(
        [
            readings(np.full(72, 10.0), sensor_id=1, location_id=10, start=start),
            readings(np.full(72, 10.0), sensor_id=2, location_id=20, start=start),
        ],
        ignore_index=True,
    )

    frame = build_features(hourly, spec, {10: timezone, 20: "UTC"})

    for location_id, tz in ((10, zone), (20, dt.UTC)):
        rows = frame[frame["location_id"] == location_id]
        local = [t.replace(tzinfo=dt.UTC).astimezone(tz) for t in rows["datetime_utc"]]
        hour = np.array([t.hour + t.minute / 60 for t in local])
        np.testing.assert_allclose(rows["hour_sin"], np.sin(2 * np.pi * hour / 24), atol=1e-12)
        np.testing.assert_allclose(rows["hour_cos"], np.cos(2 * np.pi * hour / 24), atol=1e-12)
        assert rows["day_of_week"].tolist() == [float(t.weekday()) for t in local]
        assert rows["is_weekend"].tolist() == [float(t.weekday() >= 5) for t in local]


# ---------------------------------------------------------------------------------------------
# FeatureSpec


def test_feature_spec_survives_a_json_round_trip():
    spec = FeatureSpec(
        parameter="pm10", horizons=(2, 5), lags=(1, 4), windows=(3,), covariates=("o3",)
    ).with_sensors([7, 3])

    restored = FeatureSpec.from_json(spec.to_json())

    assert restored == spec
    assert restored.sensors == (3, 7)
    assert restored.feature_columns == spec.feature_columns


def test_spec_of_a_training_set_is_the_spec_it_was_built_with():
    spec = FeatureSpec(horizons=(1, 6)).with_sensors([1, 2])
    frame = build_features(location_series(72), spec)

    assert FeatureSpec.of_training_set(frame, "pm25") == spec


def test_spec_of_a_training_set_names_missing_columns():
    frame = build_features(location_series(72), FeatureSpec(horizons=(1,)).with_sensors([1, 2]))

    with pytest.raises(ValueError, match=r"lacks feature columns \['pm10_now'\]"):
        FeatureSpec.of_training_set(frame.drop(columns="pm10_now"), "pm25")


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


def test_blend_weights_are_zero_when_the_components_add_nothing():
    model = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    components = np.column_stack([model, model, model])

    assert fit_blend_weights(model, components, model + 1.0).tolist() == [0.0, 0.0, 0.0]


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


def test_fit_forecaster_trains_on_every_row(trained):
    """fit_forecaster chooses on the last validation days, then refits on all of them:
    the same as training on the earlier rows and refitting on everything."""
    _, train, validation, holdout = trained
    frame = pd.concat([train, validation])

    fitted = fit_forecaster(frame, MODEL_SPEC, validation_days=5, max_rounds=150)
    end = frame["datetime_utc"].max().floor("D") + pd.Timedelta(days=1)
    split = TimeSplit(end - pd.Timedelta(days=5), end)
    earlier, later, _ = split.parts(frame, max(MODEL_SPEC.horizons))
    by_hand = train_forecaster(earlier, later, MODEL_SPEC, max_rounds=150).refit(frame)

    pd.testing.assert_frame_equal(fitted.predict(holdout), by_hand.predict(holdout))


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


# ---------------------------------------------------------------------------------------------
# The promotion gate


def scores(model, baselines, champion=None) -> pd.DataFrame:
    """Gate input: RMSE per forecaster and horizon, from {horizon: rmse} mappings
    (`baselines`: {name: {horizon: rmse}})."""
    rows = [("model", h, r, 100) for h, r in model.items()]
    for name, rmse in baselines.items():
        rows += [(name, h, r, 100) for h, r in rmse.items()]
    rows += [("champion", h, r, 100) for h, r in (champion or {}).items()]
    return pd.DataFrame(rows, columns=["forecaster", "horizon", "rmse", "rows"])


BASELINE_RMSE = {"persistence": {1: 5.0, 3: 9.0}, "climatology": {1: 8.0, 3: 7.0}}


def gate(model, champion=None, baseline_tolerance=0.02, champion_tolerance=0.05):
    champion_scores = scores(model, {}, champion) if champion else None
    return decide(
        scores(model, BASELINE_RMSE), baseline_tolerance, champion_tolerance, champion_scores
    )


def test_gate_passes_a_model_that_beats_the_best_baseline_and_matches_the_champion():
    decision = gate({1: 4.0, 3: 6.0}, champion={1: 4.1, 3: 6.0})

    assert decision.passed
    assert decision.reasons == []


def test_gate_passes_without_a_champion():
    assert gate({1: 4.0, 3: 6.0}).passed


@pytest.mark.parametrize("model_rmse", [7.0 * 1.021, 7.5])
def test_gate_fails_a_model_worse_than_the_best_baseline_at_one_horizon(model_rmse):
    """At 3 h the best baseline is climatology (7.0), not persistence (9.0)."""
    decision = gate({1: 4.0, 3: model_rmse})

    assert not decision.passed
    assert len(decision.reasons) == 1
    assert decision.reasons[0].startswith("3 h:")
    assert "best baseline (climatology, 7.000)" in decision.reasons[0]


def test_gate_passes_a_model_within_the_baseline_tolerance():
    assert gate({1: 4.0, 3: 7.0 * 1.019}).passed


def test_gate_fails_a_model_worse_than_the_champion_beyond_tolerance():
    champion = {1: 4.0, 3: 6.0}
    model = {1: 4.0, 3: 6.0 * 1.05 * 1.01}  # still beats every baseline

    decision = gate(model, champion)

    assert not decision.passed
    assert len(decision.reasons) == 1
    assert decision.reasons[0].startswith("3 h:")
    assert "champion" in decision.reasons[0]


def test_gate_passes_a_model_worse_than_the_champion_within_tolerance():
    champion = {1: 4.0, 3: 6.0}
    model = {1: 4.0 * 1.04, 3: 6.0 * 1.05}

    decision = gate(model, champion)

    assert decision.passed, decision.reasons


def test_stuck_runs_of_the_target_are_quarantined_floors_gaps_and_covariates_are_not():
    hours = pd.date_range("2025-01-01", periods=14, freq="h")
    one_gap = hours.delete(6)  # 13 hours of 7.0 with a missing hour: two runs of 6 and 7

    def sensor(sensor_id, parameter, times, values):
        return pd.DataFrame(
            {
                "sensor_id": sensor_id,
                "location_id": 1,
                "parameter": parameter,
                "datetime_utc": times,
                "value": values,
            }
        )

    hourly = pd.concat(
        [
            sensor(1, "pm25", hours, [3.0, 4.0] + [5.0] * 12),  # stuck for 12 hours
            sensor(2, "pm25", hours, [0.0] * 14),  # a floor: clean air
            sensor(3, "pm25", one_gap, [7.0] * 13),
            sensor(4, "co", hours, [0.1] * 14),  # a covariate at its resolution
        ],
        ignore_index=True,
    )

    stuck = stuck_hours(hourly)
    assert stuck[hourly["sensor_id"] == 1].tolist() == [False, False] + [True] * 12
    assert not stuck[hourly["sensor_id"].isin([2, 3])].any()
    kept, quarantined = without_stuck(hourly, "pm25")
    assert quarantined == 12 and len(kept) == len(hourly) - 12
    assert (kept["sensor_id"] == 4).sum() == 14
