"""Random messy histories (gaps, nulls, sentinels, spikes, sub-hourly repeats, co-located
parameters present or absent, several time zones, origins after the last reading) and how
feature rows are compared with the pandas reference (`oracle.py`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from aq_assets.ml.features import FeatureSpec
from aq_assets_tests import oracle
from aq_assets_tests.hourly import UG

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
# Sums made in another order than pandas': pandas slides one running sum along the whole
# series where the loops sum the window; the network is the hour's total less the sensor's own
# value where pandas averages the others.
# And the level's log ratio to the network (`features.RELATIVE_COLUMNS`).
SUMMED_OTHERWISE = ("mean_", "std_", "same_hour_", "network_", "level_to_network")
SMALL_SPEC = FeatureSpec(
    horizons=(1, 6, 30),
    lags=(1, 5),
    windows=(4, 30),
    covariates=("pm10", "o3", "temperature"),
    max_fill_hours=2,
).with_sensors([1, 2])


def epoch_hours(when: pd.Timestamp) -> int:
    return int((when - pd.Timestamp("1970-01-01")) // pd.Timedelta(hours=1))


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
    """Equal, except the sums made in another order (`SUMMED_OTHERWISE`): pandas slides one
    running sum along the whole series, so its window sums carry rounding from every larger
    value that passed through (about eps * scale for a mean, eps * scale**2 for a variance),
    where online sums each window afresh; the network carries the rounding of its hour's
    total."""
    if expected is None or got is None:
        assert expected is None and got is None, (expected, got)
        return
    eps = float(np.finfo(np.float64).eps)
    for name, want, have in zip(spec.feature_columns, expected, got, strict=True):
        if not name.startswith(SUMMED_OTHERWISE):
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


def assert_same_columns(expected: pd.DataFrame, got: pd.DataFrame, scale: float) -> None:
    """`assert_same_features` for whole columns."""
    eps = float(np.finfo(np.float64).eps)
    for name in expected.columns:
        want = expected[name].to_numpy(dtype="float64")
        have = got[name].to_numpy(dtype="float64")
        if not name.startswith(SUMMED_OTHERWISE):
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
    """Readings at LOCATION (a target sensor, maybe a second one, co-located parameters),
    maybe a target sensor elsewhere (8) and a pm10 sensor elsewhere; the sensor to check, an
    origin and the time zones."""
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
    if draw(st.booleans()):  # a target sensor elsewhere: the network of the others
        pieces.append(
            sensor_readings(
                rng,
                sensor_id=8,
                location_id=OTHER_LOCATION,
                parameter=spec.parameter,
                units=UG,
                start=start + pd.Timedelta(hours=draw(st.integers(-30, 30))),
                hours=hours,
                level=draw(st.sampled_from([10.0, 60.0])),
                mess=draw(messes),
            )
        )
    # Each sensor in its parameter's usual units or in others the cleaning converts into them,
    # in any of their spellings (two sensors of one place may differ).
    co_located = {
        "pm10": [(UG, 40.0), ("ug/m3", 40.0)],
        "o3": [("ppm", 0.03), (UG, 60.0), ("μg/m^3", 60.0)],
        "no2": [("ppm", 0.02), ("ppb", 20.0), ("PPBV", 20.0)],
        "temperature": [("c", 15.0), ("f", 59.0), ("°F", 59.0)],
        "relativehumidity": [("%", 60.0)],
    }
    chosen = draw(st.lists(st.sampled_from(sorted(co_located)), unique=True, max_size=5))
    for i, name in enumerate(chosen):
        for j in range(draw(st.integers(1, 2))):  # one or two sensors of the parameter
            unit, level = draw(st.sampled_from(co_located[name]))
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
