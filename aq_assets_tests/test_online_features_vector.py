"""The one implementation of cleaning and features (compiled loops: `clean_readings`,
`build_features` at every hour, `origin_features` at one) against the pandas reference
(`oracle.py`): the same cleaning, the same feature rows and the same forecasts, on simulated
histories and on random ones with gaps, nulls, sentinels, spikes, sub-hourly repeats,
co-located parameters present or absent, several time zones and origins after the last
reading; and the service's path (`serving`: one origin's row, no pandas) against the batch
path (`latest_forecasts`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aq_assets.defs.ingest.sources.simulated import SimulatedSource
from aq_assets.ml import cleaning, features
from aq_assets.ml.cleaning import clean_readings
from aq_assets.ml.features import FeatureSpec, build_features
from aq_assets.ml.forecasting import latest_forecasts
from aq_assets.ml.model import Forecaster, TimeSplit, baseline_forecaster, train_forecaster
from aq_assets_tests import oracle
from serving.champion import OnlineForecaster
from serving.snapshot import ReadingsHistory, readings_history
from serving.trees import TreeEnsemble

UG = "µg/m³"
BASE = pd.Timestamp("2025-01-01 00:00")
LOCATION, OTHER_LOCATION = 10, 20
TIMEZONES = [
    None,
    "UTC",
    "Z",
    "+05:30",
    "-03:00",
    "+0545",
    "America/Mexico_City",
    "Europe/Berlin",  # DST switches on 2025-03-30 and 2025-10-26
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Asia/Kathmandu",  # +05:45
]
# Rolling sums: pandas slides one running sum along the whole series, the loops sum the window.
ROLLING_PREFIXES = ("mean_", "std_", "same_hour_")
SMALL_SPEC = FeatureSpec(
    horizons=(1, 6, 30),
    lags=(1, 5),
    windows=(4, 30),
    covariates=("pm10", "o3", "temperature"),
    max_fill_hours=2,
).with_sensors([1, 2])


def epoch_hours(when: pd.Timestamp) -> int:
    return int((when - pd.Timestamp("1970-01-01")) // pd.Timedelta(hours=1))


def history_of(readings: pd.DataFrame) -> ReadingsHistory:
    return readings_history(
        readings["sensor_id"].to_numpy(),
        readings["location_id"].to_numpy(),
        readings["parameter"].astype(str).to_numpy(),
        readings["units"].astype(str).to_numpy(),
        readings["datetime_utc"].to_numpy().astype("datetime64[s]").astype(np.int64),
        readings["value"].to_numpy(dtype="float64"),
    )


def online_row(
    readings: pd.DataFrame,
    spec: FeatureSpec,
    sensor_id: int,
    origin: pd.Timestamp,
    timezone: str | None,
) -> np.ndarray | None:
    history = history_of(readings)
    return features.origin_features(
        spec,
        history.sensors[sensor_id].series,
        history.covariates_of(sensor_id),
        epoch_hours(origin),
        sensor_id,
        timezone,
    )


def batch_row(
    readings: pd.DataFrame,
    spec: FeatureSpec,
    sensor_id: int,
    origin: pd.Timestamp,
    timezones: dict[int, str | None],
) -> np.ndarray | None:
    hourly, _ = oracle.clean_readings(readings)
    frame = oracle.build_features(hourly, spec, timezones, until=origin)  # type: ignore[arg-type]
    rows = frame[(frame["sensor_id"] == sensor_id) & (frame["datetime_utc"] == origin)]
    if rows.empty:
        return None
    assert len(rows) == 1
    return rows[spec.feature_columns].to_numpy(dtype="float64")[0]


def assert_same_features(
    expected: np.ndarray | None, got: np.ndarray | None, spec: FeatureSpec, scale: float = 1.0
):
    """Equal, except the rolling means and spreads: pandas slides one running sum along the
    whole series, so its window sums carry rounding from every larger value that passed
    through (about eps * scale for a mean, eps * scale**2 for a variance), where online sums
    each window afresh."""
    if expected is None or got is None:
        assert expected is None and got is None, (expected, got)
        return
    eps = float(np.finfo(np.float64).eps)
    for name, want, have in zip(spec.feature_columns, expected, got, strict=True):
        if not name.startswith(ROLLING_PREFIXES):
            np.testing.assert_array_equal(have, want, err_msg=name)
            continue
        assert np.isnan(want) == np.isnan(have), (name, want, have)
        if np.isnan(want):
            continue
        if name.startswith("std_"):
            slack = 1e-9 * want**2 + 1e3 * eps * scale**2
            assert abs(have**2 - want**2) <= slack, (name, want, have, scale)
        else:
            np.testing.assert_allclose(have, want, rtol=1e-9, atol=1e3 * eps * scale, err_msg=name)


# ---------------------------------------------------------------------------------------------
# Random histories


@dataclass(frozen=True)
class Mess:
    """How messy one sensor's readings are."""

    gaps: float
    nulls: float
    sentinels: float
    spikes: float
    negatives: float
    implausible: float
    repeats: float


messes = st.builds(
    Mess,
    gaps=st.sampled_from([0.0, 0.05, 0.3, 0.8]),
    nulls=st.sampled_from([0.0, 0.05]),
    sentinels=st.sampled_from([0.0, 0.03]),
    spikes=st.sampled_from([0.0, 0.02, 0.1]),
    negatives=st.sampled_from([0.0, 0.05]),
    implausible=st.sampled_from([0.0, 0.02]),
    repeats=st.sampled_from([0.0, 0.1]),
)


def sensor_readings(
    rng: np.random.Generator,
    *,
    sensor_id: int,
    location_id: int,
    parameter: str,
    units: str,
    start: pd.Timestamp,
    hours: int,
    level: float,
    mess: Mess,
) -> pd.DataFrame:
    """Hourly readings with a daily cycle and persistence, made messy as `mess` says."""
    t = np.arange(hours)
    walk = np.cumsum(rng.normal(0, 0.15, hours))
    values = level * np.exp(0.4 * np.sin(2 * np.pi * t / 24) + walk - walk.mean())
    values = np.round(values, 1)
    r = rng.random((6, hours))
    values[r[0] < mess.spikes] *= 25
    values[r[1] < mess.negatives] = -rng.uniform(0, 20, (r[1] < mess.negatives).sum())
    values[r[2] < mess.implausible] = 5000.0
    values[r[3] < mess.sentinels] = rng.choice([-999.0, -9999.0, 9999.0, 99999.0])
    values[r[4] < mess.nulls] = np.nan
    times = start + pd.to_timedelta(t, unit="h")
    keep = r[5] >= mess.gaps
    frame = pd.DataFrame({"datetime_utc": times[keep], "value": values[keep]})
    repeats = frame.sample(frac=mess.repeats, random_state=int(rng.integers(1 << 31)))
    if len(repeats):
        repeats = repeats.assign(
            datetime_utc=repeats["datetime_utc"]
            + pd.to_timedelta(rng.integers(1, 60, len(repeats)), unit="min"),
            value=repeats["value"] + np.round(rng.normal(0, 3, len(repeats)), 2),
        )
        frame = pd.concat([frame, repeats]).sample(frac=1, random_state=1)  # any order
    return frame.assign(
        sensor_id=sensor_id, location_id=location_id, parameter=parameter, units=units
    )[["sensor_id", "location_id", "parameter", "units", "datetime_utc", "value"]]


@st.composite
def random_histories(draw, spec: FeatureSpec, target_ids: tuple[int, ...]):
    """Readings at LOCATION (a target sensor, maybe a second one, co-located parameters)
    and a target sensor elsewhere; the sensor to check, an origin and the time zones."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    start = BASE + pd.Timedelta(hours=draw(st.integers(0, 24 * 300)))
    hours = draw(st.integers(1, 24 * 35))
    target = draw(st.sampled_from(target_ids))
    units = draw(st.sampled_from([UG, UG, UG, "ppb"]))  # "ppb": no plausible range known
    pieces = [
        sensor_readings(
            rng,
            sensor_id=target,
            location_id=LOCATION,
            parameter=spec.parameter,
            units=units,
            start=start,
            hours=hours,
            level=draw(st.sampled_from([3.0, 25.0, 80.0])),
            mess=draw(messes),
        )
    ]
    if draw(st.booleans()):  # another target sensor at the same location
        pieces.append(
            sensor_readings(
                rng,
                sensor_id=7,
                location_id=LOCATION,
                parameter=spec.parameter,
                units=UG,
                start=start - pd.Timedelta(hours=5),
                hours=hours,
                level=30.0,
                mess=draw(messes),
            )
        )
    co_located = {
        "pm10": (UG, 40.0),
        "o3": ("ppm", 0.03),
        "no2": ("ppm", 0.02),
        "temperature": ("c", 15.0),
        "relativehumidity": ("%", 60.0),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(co_located)), unique=True, max_size=5))
    for i, name in enumerate(chosen):
        unit, level = co_located[name]
        for j in range(draw(st.integers(1, 2))):  # one or two sensors of the parameter
            offset = draw(st.integers(-48, 48))
            pieces.append(
                sensor_readings(
                    rng,
                    sensor_id=100 + 10 * i + j,
                    location_id=LOCATION,
                    parameter=name,
                    units=unit,
                    start=start + pd.Timedelta(hours=offset),
                    hours=max(1, hours - offset),
                    level=level,
                    mess=draw(messes),
                )
            )
    # The same parameter elsewhere must not leak into LOCATION's features.
    pieces.append(
        sensor_readings(
            rng,
            sensor_id=900,
            location_id=OTHER_LOCATION,
            parameter="pm10",
            units=UG,
            start=start,
            hours=hours,
            level=500.0,
            mess=Mess(0.1, 0, 0, 0, 0, 0, 0),
        )
    )
    readings = pd.concat(pieces, ignore_index=True)
    timezone = draw(st.sampled_from(TIMEZONES))
    last = start + pd.Timedelta(hours=hours - 1)
    origin = draw(
        st.one_of(
            st.just(last),
            st.integers(1, 40).map(lambda k: last + pd.Timedelta(hours=k)),
            st.integers(0, hours).map(lambda k: start + pd.Timedelta(hours=k)),
            st.integers(1, 30).map(lambda k: start - pd.Timedelta(hours=k)),
        )
    )
    return readings, target, origin, {LOCATION: timezone, OTHER_LOCATION: "+09:00"}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), spec=st.sampled_from([FeatureSpec().with_sensors([1, 2]), SMALL_SPEC]))
def test_the_origin_row_matches_build_features_on_random_histories(data, spec):
    readings, target, origin, timezones = data.draw(random_histories(spec, (1, 2, 3)))
    history = history_of(readings)
    sensor = history.sensors.get(target)
    if sensor is None or not len(sensor.series):  # no reading, or cleaning dropped them all
        hourly, _ = clean_readings(readings)
        assert target not in set(hourly["sensor_id"])
        return

    expected = batch_row(readings, spec, target, origin, timezones)
    got = online_row(readings, spec, target, origin, timezones[LOCATION])

    scale = float(np.abs(sensor.series.values).max())
    assert_same_features(expected, got, spec, scale)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), spec=st.sampled_from([FeatureSpec().with_sensors([1, 2]), SMALL_SPEC]))
def test_a_batch_of_origins_gives_each_the_row_it_gets_alone(data, spec):
    """The service computes a request's rows in one pass: no row may see another's data."""
    readings, _, origin, timezones = data.draw(random_histories(spec, (1, 2, 3)))
    history = history_of(readings)
    at = epoch_hours(origin)
    items = [
        features.Origin(
            sensor.series, history.covariates_of(sensor_id), at + shift, sensor_id, zone
        )
        for sensor_id, sensor in history.sensors.items()
        for shift, zone in ((0, timezones[LOCATION]), (-30, "Europe/Berlin"), (3, None))
    ]
    items.append(features.Origin(cleaning.HourlySeries.empty(), {}, at, 1, None))

    rows, valid = features.origin_feature_rows(spec, items)

    assert rows.shape == (len(items), len(spec.feature_columns)) and not valid[-1]
    for item, row, ok in zip(items, rows, valid, strict=True):
        alone = features.origin_features(
            spec, item.target, item.covariates, item.origin, item.sensor_id, item.timezone
        )
        if alone is None:
            assert not ok and np.isnan(row).all()
        else:
            assert ok
            np.testing.assert_array_equal(row, alone)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_cleaning_matches_clean_readings_value_for_value(data):
    """readings_history cleans every sensor in one pass (clean_many): each as pandas does."""
    readings, _, _, _ = data.draw(random_histories(FeatureSpec(), (1,)))

    hourly, _ = clean_readings(readings)
    history = history_of(readings)

    kept = {sensor for sensor, h in history.sensors.items() if len(h.series)}
    assert kept == set(hourly["sensor_id"])
    for sensor_id, rows in hourly.groupby("sensor_id"):
        series = history.sensors[sensor_id].series
        np.testing.assert_array_equal(
            series.hours,
            rows["datetime_utc"].to_numpy().astype("datetime64[h]").astype(np.int64),
        )
        np.testing.assert_array_equal(series.values, rows["value"].to_numpy())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), spec=st.sampled_from([FeatureSpec().with_sensors([1, 2]), SMALL_SPEC]))
def test_every_row_and_the_cleaning_report_match_the_pandas_reference(data, spec):
    """What training and batch predictions get (every hour of every sensor) is the
    reference's frame, column for column."""
    readings, _, origin, timezones = data.draw(random_histories(spec, (1, 2, 3)))
    until = data.draw(st.sampled_from([None, origin]))

    hourly, report = clean_readings(readings)
    frame = build_features(hourly, spec, timezones, until=until)  # type: ignore[arg-type]

    expected_hourly, expected_report = oracle.clean_readings(readings)
    assert report == expected_report
    pd.testing.assert_frame_equal(hourly, expected_hourly, check_dtype=False)
    expected = oracle.build_features(expected_hourly, spec, timezones, until=until)  # type: ignore[arg-type]
    assert list(frame.columns) == list(expected.columns)
    assert len(frame) == len(expected)
    if frame.empty:
        return
    for name in ["sensor_id", "location_id", "datetime_utc", "y", *spec.target_columns]:
        np.testing.assert_array_equal(frame[name].to_numpy(), expected[name].to_numpy(), name)
    scale = float(np.nanmax(np.abs(hourly["value"].to_numpy())))
    assert_same_columns(expected[spec.feature_columns], frame[spec.feature_columns], scale)


def assert_same_columns(expected: pd.DataFrame, got: pd.DataFrame, scale: float) -> None:
    """`assert_same_features` for whole columns."""
    eps = float(np.finfo(np.float64).eps)
    for name in expected.columns:
        want = expected[name].to_numpy(dtype="float64")
        have = got[name].to_numpy(dtype="float64")
        if not name.startswith(ROLLING_PREFIXES):
            np.testing.assert_array_equal(have, want, err_msg=name)
            continue
        np.testing.assert_array_equal(np.isnan(have), np.isnan(want), err_msg=name)
        known = ~np.isnan(want)
        want, have = want[known], have[known]
        if name.startswith("std_"):
            slack = 1e-9 * want**2 + 1e3 * eps * scale**2
            assert (np.abs(have**2 - want**2) <= slack).all(), name
        else:
            np.testing.assert_allclose(have, want, rtol=1e-9, atol=1e3 * eps * scale, err_msg=name)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([10, None, 12], [10, 12], id="null"),
        pytest.param([10, -999, 12], [10, 12], id="sentinel"),
        pytest.param([10, 5000, 12], [10, 12], id="implausible"),
        pytest.param([10, -3, 12], [10, 0, 12], id="small-negative"),
        pytest.param([10, -15, 12], [10, 12], id="big-negative"),
        pytest.param([*([10.0] * 24), 600.0, 11.0], [*([10.0] * 24), 11.0], id="spike"),
    ],
)
def test_clean_series_rules(values, expected):
    seconds = np.arange(len(values)) * cleaning.SECONDS_PER_HOUR
    raw = np.array([np.nan if v is None else v for v in values], dtype="float64")

    series = cleaning.clean_series(seconds, raw, "pm25", UG)

    assert series.values.tolist() == [float(v) for v in expected]


def test_a_batch_cleans_each_series_as_if_alone():
    """Five readings are too few to call the sixth a spike; the series cleaned before it in
    the same batch must not lend one (nor its hours, nor its units)."""
    hour = 3600
    before = cleaning.RawSeries(
        np.arange(3) * hour, np.array([5.0, 5.0, 5.0]), "pm25", np.array(["ppb"] * 3)
    )
    alone = cleaning.RawSeries(
        np.arange(6) * hour, np.array([5.0, 5.0, 5.0, 5.0, 5.0, 200.0]), "pm25", UG
    )

    cleaned = cleaning.clean_many([before, alone])

    assert cleaned[1].values.tolist() == [5.0, 5.0, 5.0, 5.0, 5.0, 200.0]
    np.testing.assert_array_equal(cleaned[1].hours, np.arange(6))
    with_six = cleaning.RawSeries(np.arange(7) * hour, np.array([5.0] * 6 + [200.0]), "pm25", UG)
    assert 200.0 not in cleaning.clean_many([before, with_six])[1].values  # the rule works


@pytest.mark.parametrize(
    "values", [[], [np.nan], [-999.0, 5000.0]], ids=["none", "null", "all-dropped"]
)
def test_a_batch_without_a_valid_reading_cleans_to_empty_series(values):
    """Found by the API fuzz: a pm25 batch whose readings all go must not reach the spike rule."""
    raw = cleaning.RawSeries(np.arange(len(values)) * 3600, np.array(values), "pm25", UG)

    cleaned = cleaning.clean_many([raw, raw])

    assert [len(series) for series in cleaned] == [0, 0]


def test_values_within_an_hour_are_averaged_with_pandas_compensated_sum():
    # Naive summation loses the small values next to the big ones; pandas' Kahan sum does not.
    values = np.array([0.1, 1e15, 0.3, -1e15, 0.7, 0.2])
    seconds = np.arange(values.size) * 60  # all in the first hour
    readings = pd.DataFrame(
        {
            "sensor_id": 1,
            "location_id": 1,
            "parameter": "bc",
            "units": UG,
            "datetime_utc": pd.Timestamp("1970-01-01") + pd.to_timedelta(seconds, unit="s"),
            "value": values,
        }
    )

    series = cleaning.clean_series(seconds, values, "bc", UG)

    assert series.values.tolist() == clean_readings(readings)[0]["value"].tolist()


@pytest.mark.parametrize(
    "timezone", ["Mars/Olympus", "+25:00", "+05:75", "../etc/passwd", "x" * 300]
)
def test_unusable_time_zones_are_refused(timezone):
    with pytest.raises(ValueError, match=r"zone|offset"):
        features.check_timezone(timezone)


# ---------------------------------------------------------------------------------------------
# Simulated histories and the trained forecaster


def simulated_readings(days: int, first_day: dt.date = dt.date(2025, 3, 1)) -> pd.DataFrame:
    source = SimulatedSource()
    catalog = source.list_sensors()
    from aq_assets.defs.ingest.catalog import sensors_by_id

    sensors = sensors_by_id(catalog, list(catalog["sensor_id"]))
    frames = [
        source.fetch_day(sensor, first_day + dt.timedelta(days=i)).readings
        for i in range(days)
        for sensor in sensors.values()
    ]
    readings = pd.concat(frames, ignore_index=True)
    return readings.astype({"parameter": str, "units": str})


@pytest.fixture(scope="module")
def simulated():
    readings = simulated_readings(30)
    catalog = SimulatedSource().list_sensors()
    timezones = dict(zip(catalog["location_id"], catalog["timezone"], strict=False))
    return readings, timezones


@pytest.fixture(scope="module")
def forecaster(simulated) -> Forecaster:
    readings, timezones = simulated
    hourly, _ = clean_readings(readings)
    targets = sorted(hourly.loc[hourly["parameter"] == "pm25", "sensor_id"].unique())
    spec = FeatureSpec().with_sensors(targets)
    frame = build_features(hourly, spec, timezones)
    split = TimeSplit.last_days(frame["datetime_utc"], holdout_days=4, validation_days=5)
    train, validation, _ = split.parts(frame, max(spec.horizons))
    return train_forecaster(train, validation, spec, max_rounds=40, early_stopping_rounds=10)


def online_forecasts(
    forecaster: Forecaster,
    readings: pd.DataFrame,
    timezones: dict[int, str],
    origin: pd.Timestamp | None,
) -> dict[int, np.ndarray]:
    """sensor → forecasts by horizon, as the service computes them."""
    model = OnlineForecaster(forecaster)
    history = history_of(readings)
    out = {}
    for sensor_id, sensor in history.sensors.items():
        if sensor.parameter != forecaster.spec.parameter or not len(sensor.series):
            continue
        at = epoch_hours(origin) if origin is not None else int(sensor.series.hours[-1])
        row = features.origin_features(
            forecaster.spec,
            sensor.series,
            history.covariates_of(sensor_id),
            at,
            sensor_id,
            timezones.get(sensor.location_id),
        )
        if row is not None:
            out[sensor_id] = model.predict(row[None, :], [sensor_id], [at])[0]
    return out


def batch_forecasts(forecaster, readings, timezones, origin) -> dict[int, np.ndarray]:
    table = latest_forecasts(forecaster, readings, timezones, origin=origin)
    return {
        int(sensor): rows.sort_values("horizon")["forecast"].to_numpy(dtype="float64")
        for sensor, rows in table.groupby("sensor_id")
    }


def assert_same_forecasts(expected: dict[int, np.ndarray], got: dict[int, np.ndarray]):
    assert sorted(got) == sorted(expected)
    for sensor in expected:
        np.testing.assert_allclose(got[sensor], expected[sensor], rtol=1e-5, atol=1e-5)


def test_the_compiled_trees_predict_exactly_what_the_boosters_do(forecaster, simulated):
    readings, timezones = simulated
    hourly, _ = clean_readings(readings)
    frame = build_features(hourly, forecaster.spec, timezones).sample(500, random_state=1)
    model = OnlineForecaster(forecaster)
    features = frame[forecaster.spec.feature_columns].to_numpy(dtype=np.float32)

    assert model.compiled, model.compiled_error
    got = model._changes(features)
    for j, h in enumerate(model.horizons):
        np.testing.assert_array_equal(got[:, j], forecaster.boosters[h].inplace_predict(features))


def test_a_baseline_forecaster_serves_what_forecaster_predict_does(forecaster, simulated):
    """A baseline champion (no boosters) goes through the same blend online and in batch."""
    readings, timezones = simulated
    hourly, _ = clean_readings(readings)
    frame = build_features(hourly, forecaster.spec, timezones).sample(300, random_state=2)
    choice = {h: "climatology" if h >= 12 else "persistence" for h in forecaster.spec.horizons}
    baseline = baseline_forecaster(frame, forecaster.spec, choice)
    model = OnlineForecaster(baseline)

    got = model.predict(
        frame[forecaster.spec.feature_columns].to_numpy(dtype="float64"),
        frame["sensor_id"].tolist(),
        [epoch_hours(t) for t in frame["datetime_utc"]],
    )

    assert model.is_baseline
    np.testing.assert_array_equal(got, baseline.predict(frame).to_numpy())
    level = frame["level"].to_numpy()
    np.testing.assert_array_equal(got[:, 0], level)  # 1 h: persistence


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "xgboost"])
def test_online_forecaster_predicts_what_forecaster_predict_does(
    forecaster, simulated, compiled, monkeypatch
):
    if not compiled:

        def refuse(boosters):
            raise ValueError("a layout the compiled trees do not know")

        monkeypatch.setattr(TreeEnsemble, "from_boosters", refuse)
    readings, timezones = simulated
    hourly, _ = clean_readings(readings)
    frame = build_features(hourly, forecaster.spec, timezones).sample(500, random_state=0)
    model = OnlineForecaster(forecaster)

    got = model.predict(
        frame[forecaster.spec.feature_columns].to_numpy(dtype="float64"),
        frame["sensor_id"].tolist(),
        [epoch_hours(t) for t in frame["datetime_utc"]],
    )

    assert model.compiled is compiled
    if not compiled:
        assert model.compiled_error == "ValueError: a layout the compiled trees do not know"
    expected = forecaster.predict(frame)
    assert any(w for w in forecaster.blend_weights.values())  # the blend is used
    np.testing.assert_array_equal(got, expected.to_numpy())


@pytest.mark.parametrize(
    "origin",
    [
        None,  # each sensor's last reading
        pd.Timestamp("2025-03-30 00:00"),
        pd.Timestamp("2025-03-30 23:00") + pd.Timedelta(hours=2),  # after the last reading
        pd.Timestamp("2025-03-30 23:00") + pd.Timedelta(hours=9),  # no level any more
        pd.Timestamp("2025-03-04 17:00"),  # little history: profiles and long windows partial
    ],
)
def test_online_forecasts_equal_latest_forecasts_on_simulated_readings(
    forecaster, simulated, origin
):
    readings, timezones = simulated

    assert_same_forecasts(
        batch_forecasts(forecaster, readings, timezones, origin),
        online_forecasts(forecaster, readings, timezones, origin),
    )


def test_online_forecasts_equal_latest_forecasts_on_a_snapshot_sized_history(forecaster, simulated):
    # What online_features holds: the last history_hours + 24 hours of every parameter.
    readings, timezones = simulated
    hours = forecaster.spec.history_hours + 24
    recent = readings[
        readings["datetime_utc"] > readings["datetime_utc"].max() - pd.Timedelta(hours=hours)
    ]

    assert_same_forecasts(
        batch_forecasts(forecaster, recent, timezones, None),
        online_forecasts(forecaster, recent, timezones, None),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_online_forecasts_equal_latest_forecasts_on_random_histories(data, forecaster):
    spec = forecaster.spec
    readings, _, origin, timezones = data.draw(
        random_histories(spec, (spec.sensors[0], spec.sensors[2], 4242))  # 4242: unknown
    )
    readings = readings[readings["sensor_id"] != 7]  # one target sensor per location here

    expected = batch_forecasts(forecaster, readings, timezones, origin)
    got = online_forecasts(forecaster, readings, timezones, origin)

    assert_same_forecasts(expected, got)
