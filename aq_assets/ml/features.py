"""Features of the target series at an hour: the one implementation that training, batch
predictions and the HTTP service all call, so they agree to the bit.

A sensor's rows live on a complete hourly grid from its first reading (a missing hour is a
row with NaN). Every feature at hour t uses hours <= t only; `target_h{h}` columns hold the
value h hours later and are for training and evaluation only.

The row at an origin is computed by a loop compiled with numba (`kernels.origin_rows`) from
the cleaned series it reads, for many origins in one call: the service asks for one origin a
series, training for every hour of every sensor (`build_features`). Measured in
`benchmarks/features_sql_vs_pandas.py` against whole-frame pandas (`aq_assets_tests/oracle.py`,
the reference the tests hold it equal to) and DuckDB SQL.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from aq_assets.ml.cleaning import (
    DEFAULT_UNITS,
    HourlySeries,
    LaidSeries,
    epoch_hours,
    hours_to_datetimes,
    laid_end_to_end,
    location_means,
)

# The other sensors of the target parameter in the same data: a covariate like a co-located
# parameter, but one series per sensor (`network_series`). Pollution moves across a city.
NETWORK = "network"
DEFAULT_COVARIATES = (
    "pm10",
    "pm1",
    "no2",
    "no",
    "nox",
    "o3",
    "co",
    "so2",
    "temperature",
    "relativehumidity",
    NETWORK,
)
WEATHER = ("temperature", "relativehumidity")  # co-located, but not pollutants
PROFILE_DAYS = (7, 28)
COVARIATE_FILL_HOURS = 2  # a co-located value is carried forward at most this long
# A sensor's level against its network's: log((level + c) / (network + c)) and network −
# level, with c in the target's units keeping the ratio finite at zero (1 µg/m³ for PM; for a
# gas in ppm the log ratio is nearly the difference, which measured no worse: benchmarks/).
RELATIVE_COLUMNS = ("level_to_network_log", "network_minus_level")
RELATIVE_OFFSET = 1.0
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")
# Offsets beyond any real zone's are refused rather than turned into nonsense local times.
_MAX_OFFSET = dt.timedelta(hours=18)


@dataclass(frozen=True)
class FeatureSpec:
    """What the features are; saved with every model so serving rebuilds exactly these."""

    parameter: str = "pm25"
    horizons: tuple[int, ...] = (1, 3, 6, 12, 24)
    lags: tuple[int, ...] = (1, 2, 3, 6, 12, 23, 24, 48, 168)
    windows: tuple[int, ...] = (3, 6, 24, 168)
    covariates: tuple[str, ...] = DEFAULT_COVARIATES
    max_fill_hours: int = 3  # the "current level" is the latest value at most this old
    sensors: tuple[int, ...] = field(default=())  # sensor identity categories, fixed at training
    # Covariates that also get their change over the last hour (`{p}_change_1`): the network
    # leads the sensor by an hour or so when a plume crosses the city.
    hourly_changes: tuple[str, ...] = (NETWORK,)
    # The level against the network's (RELATIVE_COLUMNS). Shallow trees draw a ratio or a
    # difference of two columns only as a staircase of splits; given as columns they were
    # worth ~1% of RMSE at 1 and 3 h on Poland and Mexico City (benchmarks/README.md).
    relative: bool = True

    @property
    def feature_columns(self) -> list[str]:
        columns = ["level", "hours_since_reading"]
        columns += [f"lag_{k}" for k in self.lags]
        for w in self.windows:
            columns += [f"mean_{w}", f"std_{w}"]
        columns += ["max_24", "change_1", "change_3", "change_24"]
        for days in PROFILE_DAYS:
            columns += [f"same_hour_{days}d_h{h}" for h in self.horizons if h <= 24]
        columns += ["hour_sin", "hour_cos", "day_of_week", "is_weekend", "doy_sin", "doy_cos"]
        for p in self.covariates:
            columns += [f"{p}_now", f"{p}_change_3"]
            if p in self.hourly_changes:
                columns.append(f"{p}_change_1")
        if self.relative and NETWORK in self.covariates:
            columns += RELATIVE_COLUMNS
        columns.append("sensor_code")
        return columns

    @property
    def target_columns(self) -> list[str]:
        return [f"target_h{h}" for h in self.horizons]

    @property
    def history_hours(self) -> int:
        """Hours of history before a forecast origin that every feature reads: with less, the
        long windows and the same-hour profiles are computed over fewer values than in
        training, and the forecast differs."""
        return max(*self.lags, *self.windows, 24 * max(PROFILE_DAYS)) + 1

    @property
    def sensor_code_of(self) -> dict[int, float]:
        """The `sensor_code` feature of each sensor fixed at training (others: missing)."""
        return {sensor: float(i) for i, sensor in enumerate(self.sensors)}

    def with_sensors(self, sensors: list[int]) -> FeatureSpec:
        return FeatureSpec(**{**asdict(self), "sensors": tuple(sorted(int(s) for s in sensors))})

    @classmethod
    def of_training_set(cls, frame: pd.DataFrame, parameter: str) -> FeatureSpec:
        """The spec a training set was built with: horizons from its target columns, sensor
        identities from its rows, the rest the defaults (checked against its columns), the
        relative columns only where the set has a network."""
        horizons = tuple(
            sorted(
                int(c.removeprefix("target_h")) for c in frame.columns if c.startswith("target_h")
            )
        )
        spec = cls(parameter=parameter, horizons=horizons).with_sensors(
            list(frame["sensor_id"].unique())
        )
        # Without a network in the data (a lone sensor) the relative columns would be empty,
        # and an empty column only changes which columns each tree samples.
        network = f"{NETWORK}_now"
        if network not in frame.columns or not frame[network].notna().any():
            spec = replace(spec, relative=False)
        missing = [c for c in spec.feature_columns if c not in frame.columns]
        if missing:
            raise ValueError(
                f"training_set lacks feature columns {missing[:5]}; re-materialize training_set."
            )
        return spec

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        raw = json.loads(text)
        raw.setdefault("relative", False)  # saved before the relative columns: without them
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**fields)


def sensor_series(
    hourly: pd.DataFrame, spec: FeatureSpec, timezones: Mapping[int, str | None] | None = None
) -> list[SensorSeries]:
    """Every target-parameter sensor of `hourly` (`clean_readings`' output: one value per
    sensor-hour, all parameters) with its location's co-located parameters (the mean over the
    location's sensors), its network (`network_series`, as the covariate `network`) and time
    zone, sensors in ascending id."""
    target = hourly[hourly["parameter"] == spec.parameter]
    if target.empty:
        return []
    locations = dict(zip(target["sensor_id"], target["location_id"], strict=False))
    covariate_rows = hourly[hourly["parameter"].isin(spec.covariates)]
    covariates = location_means(
        (location, parameter, series)
        for (_, location, parameter), series in _series_by(
            covariate_rows, ["sensor_id", "location_id", "parameter"]
        ).items()
    )
    targets = _series_by(target, "sensor_id")
    networks = network_series(targets) if NETWORK in spec.covariates else {}
    zones = timezones or {}
    out = []
    for sensor_id, series in targets.items():
        location = int(locations[sensor_id])
        network = networks.get(sensor_id)
        out.append(
            SensorSeries(
                series,
                covariates.get(location, {})
                if network is None
                else {**covariates.get(location, {}), NETWORK: network},
                int(sensor_id),
                location,
                zones.get(location),
                spec.parameter,
            )
        )
    return out


def network_series(sensors: Mapping[int, HourlySeries]) -> dict[int, HourlySeries]:
    """Each sensor's network: the mean per hour of the other sensors' cleaned values (of one
    parameter, in the same data), at the hours where any of them has one; a sensor with no
    other sensor has none. The one rule training, batch predictions (`sensor_series`) and the
    service's snapshot (`serving.snapshot.readings_history`) read the network by.

    Every sensor's is the hour's total less its own value, over the count less one: one pass
    over the readings and one over the hours per sensor, not a mean of the others per sensor
    (quadratic in sensors: minutes at 1,000). An hour's total depends only on that hour's
    readings, summed in ascending sensor id, so any window of the same data gives the same."""
    ids = sorted(s for s, series in sensors.items() if len(series))
    if len(ids) < 2:
        return {}
    hours = np.concatenate([sensors[s].hours for s in ids]).astype(np.int64, copy=False)
    values = np.concatenate([sensors[s].values for s in ids]).astype(np.float64, copy=False)
    grid, at = np.unique(hours, return_inverse=True)
    total = np.bincount(at, weights=values, minlength=grid.size)
    count = np.bincount(at, minlength=grid.size)
    out = {}
    start = 0
    for sensor in ids:
        own = at[start : start + len(sensors[sensor])]
        start += own.size
        others_total, others_count = total.copy(), count.copy()
        others_total[own] -= sensors[sensor].values
        others_count[own] -= 1
        kept = others_count > 0
        out[sensor] = HourlySeries(grid[kept], others_total[kept] / others_count[kept])
    return out


def build_features(
    hourly: pd.DataFrame,
    spec: FeatureSpec,
    timezones: Mapping[int, str | None] | None = None,
    until: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Feature rows for every target-parameter sensor in `hourly` (`sensor_series`), one per
    hour from its first reading to its last (or to `until`, the forecast origin, ignoring
    later readings), sensors in ascending id. Columns: sensor_id, location_id, datetime_utc,
    y, the spec's feature columns, then its target columns."""
    columns = ["sensor_id", "location_id", "datetime_utc", "y", *spec.feature_columns]
    columns += spec.target_columns
    if until is not None:
        later = (hourly["parameter"] == spec.parameter) & (hourly["datetime_utc"] > until)
        hourly = hourly[~later]
    items = sensor_series(hourly, spec, timezones)
    if not items:
        return pd.DataFrame(columns=columns)
    last = None if until is None else int(epoch_hours(pd.Series([until]))[0])
    origins = [
        np.arange(
            int(item.target.hours[0]),
            (int(item.target.hours[-1]) if last is None else last) + 1,
            dtype=np.int64,
        )
        for item in items
    ]
    rows, _ = _rows(spec, items, origins)
    every = np.concatenate(origins)
    frame = pd.DataFrame(rows, columns=spec.feature_columns)
    frame.insert(0, "sensor_id", np.repeat([i.sensor_id for i in items], [o.size for o in origins]))
    frame.insert(
        1, "location_id", np.repeat([i.location_id for i in items], [o.size for o in origins])
    )
    frame.insert(2, "datetime_utc", hours_to_datetimes(every))
    frame.insert(3, "y", _values_at(items, origins, 0))
    for h in spec.horizons:
        frame[f"target_h{h}"] = _values_at(items, origins, h)
    return frame[columns]


@dataclass(frozen=True)
class SensorSeries:
    """What a forecast reads of one sensor: its cleaned series (`target`), its location's
    cleaned co-located parameters, and where it is. The one type of a sensor's history for
    training, batch predictions and the service."""

    target: HourlySeries
    covariates: Mapping[str, HourlySeries] = field(default_factory=dict)
    sensor_id: int | None = None
    location_id: int | None = None
    timezone: str | None = None
    parameter: str | None = None  # of the target


def _series_by(hourly: pd.DataFrame, keys: str | list[str]) -> dict[Any, HourlySeries]:
    """The cleaned series of each group of `keys`, in sorted order of the keys."""
    by = [keys] if isinstance(keys, str) else keys
    frame = hourly.sort_values([*by, "datetime_utc"], kind="stable")
    hours = epoch_hours(frame["datetime_utc"])
    values = frame["value"].to_numpy(dtype=np.float64)
    out = {}
    for key, rows in frame.groupby(keys, sort=True).indices.items():
        out[key] = HourlySeries(hours[rows], values[rows])
    return out


def _values_at(
    items: Sequence[SensorSeries], origins: Sequence[np.ndarray], ahead: int
) -> np.ndarray:
    """Each sensor's cleaned value `ahead` hours after each of its origins (NaN: none)."""
    pieces = []
    for item, hours in zip(items, origins, strict=True):
        series = item.target
        wanted = hours + ahead
        at = np.searchsorted(series.hours, wanted).clip(max=max(len(series) - 1, 0))
        found = series.hours[at] == wanted if len(series) else np.zeros(wanted.size, bool)
        pieces.append(np.where(found, series.values[at] if len(series) else np.nan, np.nan))
    return np.concatenate(pieces)


def origin_features(spec: FeatureSpec, sensor: SensorSeries, origin: int) -> np.ndarray | None:
    """The feature row (float64, `spec.feature_columns` order) of the sensor at hour `origin`
    (epoch hours); None where there is no row (no reading at or before the origin). Readings
    after the origin are ignored."""
    rows, valid = origin_feature_rows(spec, [sensor], [origin])
    return rows[0] if valid[0] else None


def origin_feature_rows(
    spec: FeatureSpec,
    sensors: Sequence[SensorSeries],
    origins: Sequence[int],
    targets: LaidSeries | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`origin_features` of many sensors, one origin each, in one compiled pass: the rows
    (n × features) and whether each has one (a row without is all NaN). `targets`: the
    sensors' target series already laid end to end, as a request's cleaning leaves them
    (else they are laid here)."""
    return _rows(spec, sensors, [np.array([o], dtype=np.int64) for o in origins], targets)


def _rows(
    spec: FeatureSpec,
    items: Sequence[SensorSeries],
    origins: Sequence[np.ndarray],
    target: LaidSeries | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The feature rows at each sensor's origins, every origin of every sensor in one call
    of `kernels.origin_rows`; sensors share their series between their origins. `target`:
    the items' target series laid end to end, if they already are."""
    from aq_assets.ml.kernels import origin_rows

    plan = _plan(spec)
    col = plan.columns
    counts = np.array([o.size for o in origins], dtype=np.int64)
    n = int(counts.sum())
    every = np.concatenate(origins) if n else np.empty(0, dtype=np.int64)
    rows = np.full((n, plan.width), np.nan)
    valid = np.zeros(n, dtype=np.bool_)
    one_each = n == len(items)  # a request: one origin a series
    if target is None:
        target = laid_end_to_end([i.target for i in items])
    first_hours = _first_hours(target)
    if not one_each:
        first_hours = np.repeat(first_hours, counts)
    item_of = np.arange(n) if one_each else np.repeat(np.arange(len(items)), counts)
    target_starts, target_ends = _slices_to(target, item_of, every)
    # The co-located parameter p of origin k is series item_of[k] * P + p, at k * P + p.
    n_covariates = len(plan.covariates)
    covariates = _covariates_laid(items, plan.covariates)
    cov_starts, cov_ends = _slices_to(
        covariates,
        (item_of[:, None] * n_covariates + np.arange(n_covariates)).reshape(-1),
        np.repeat(every, n_covariates),
    )
    origin_rows(
        rows,
        valid,
        every,
        first_hours,
        target[0],
        target[1],
        target_starts,
        target_ends,
        covariates[0],
        covariates[1],
        cov_starts,
        cov_ends,
        plan.lookback,
        spec.max_fill_hours,
        COVARIATE_FILL_HOURS,
        plan.fixed_columns,
        plan.lag_positions,
        plan.lag_columns,
        plan.window_positions,
        plan.window_min_periods,
        plan.window_columns,
        plan.profile_positions,
        plan.profile_min_periods,
        plan.profile_columns,
        plan.covariate_now_columns,
        plan.covariate_change_columns,
        plan.covariate_change_1_columns,
        plan.relative_columns,
        plan.columns.get(f"{NETWORK}_now", -1),
        RELATIVE_OFFSET,
    )
    # The calendar: a request's origins are a few recent hours, each looked up once and
    # kept; otherwise every origin of a time zone at once.
    zones = [item.timezone or "" for item in items]
    hour, weekday, day_of_year = np.empty(n), np.empty(n), np.empty(n)
    if one_each and n:
        calendars = zip(*map(_calendar_at, every.tolist(), zones), strict=True)
        hour[:], weekday[:], day_of_year[:] = (np.concatenate(part) for part in calendars)
    elif len(set(zones)) == 1:
        hour[:], weekday[:], day_of_year[:] = local_calendar(every, zones[0] if n else None)
    else:
        zone_of = np.repeat(np.array(zones, dtype=object), counts)
        for zone in set(zones):
            mask = zone_of == zone
            hour[mask], weekday[mask], day_of_year[mask] = local_calendar(every[mask], zone)
    rows[:, col["hour_sin"]] = np.sin(2 * np.pi * hour / 24)
    rows[:, col["hour_cos"]] = np.cos(2 * np.pi * hour / 24)
    rows[:, col["day_of_week"]] = weekday
    rows[:, col["is_weekend"]] = weekday >= 5
    rows[:, col["doy_sin"]] = np.sin(2 * np.pi * day_of_year / 365.25)
    rows[:, col["doy_cos"]] = np.cos(2 * np.pi * day_of_year / 365.25)
    codes = [
        plan.sensor_codes.get(int(i.sensor_id), np.nan) if i.sensor_id is not None else np.nan
        for i in items
    ]
    rows[:, col["sensor_code"]] = np.repeat(codes, counts)
    rows[~valid] = np.nan
    return rows, valid


def _slices_to(
    laid: LaidSeries, series: np.ndarray, hours: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per origin (the index of its series in `laid`, its hour), the slice of the series'
    readings it may read: from the series' start to its last reading at or before the hour
    (the kernel walks back from there, so a row costs its window, not the whole history).
    One search over every series at once: each reading keyed by series, then hour."""
    laid_hours, _, offsets = laid
    if series.size == offsets.size - 1 and (series == np.arange(series.size)).all():
        # One origin a series (a request): the kernel's walk back from the series' end costs
        # only the readings after the origin, fewer than a search's set-up.
        return offsets[:-1], offsets[1:]
    owner = np.repeat(np.arange(offsets.size - 1, dtype=np.int64), np.diff(offsets))
    keys = owner * _SERIES_STRIDE + laid_hours
    ends = np.searchsorted(keys, series * _SERIES_STRIDE + hours, side="right")
    return offsets[series], ends.astype(np.int64)


_NO_READING = np.iinfo(np.int64).max  # the first hour of a series without readings

# Wider than any span of epoch hours a series can have (1970-2100 is ~1.1 million hours).
_SERIES_STRIDE = np.int64(1 << 32)


def _first_hours(laid: LaidSeries) -> np.ndarray:
    """Each laid series' first hour (_NO_READING for one without readings)."""
    hours, _, offsets = laid
    starts = offsets[:-1]
    present = offsets[1:] > starts
    out = np.full(starts.size, _NO_READING, dtype=np.int64)
    out[present] = hours[starts[present]]
    return out


def _covariates_laid(items: Sequence[SensorSeries], names: tuple[str, ...]) -> LaidSeries:
    """`laid_end_to_end` of every item's co-located series, parameter p of item i the
    series i * len(names) + p (empty where the item lacks it): a lookup per parameter only
    for the items that have any, since a batch of target-only series has 100 × 11 gaps."""
    present = [
        (i * len(names) + p, one)
        for i, item in enumerate(items)
        if item.covariates
        for p, name in enumerate(names)
        if (one := item.covariates.get(name)) is not None and len(one)
    ]
    sizes = np.zeros(len(items) * len(names), dtype=np.int64)
    offsets = np.zeros(sizes.size + 1, dtype=np.int64)
    if not present:
        return np.empty(0, dtype=np.int64), np.empty(0), offsets
    sizes[[k for k, _ in present]] = [one.hours.size for _, one in present]
    np.cumsum(sizes, out=offsets[1:])
    hours = np.concatenate([one.hours for _, one in present]).astype(np.int64, copy=False)
    values = np.concatenate([one.values for _, one in present]).astype(np.float64, copy=False)
    return hours, values, offsets


@dataclass(frozen=True)
class _Plan:
    """Where each feature comes from, computed once per spec. Positions index the dense
    history `y` of `lookback + 2` hours: the origin sits at `lookback`, and the last slot is
    always missing, to pad windows of different lengths into one matrix."""

    width: int
    lookback: int
    lag_columns: np.ndarray
    lag_positions: np.ndarray
    window_columns: np.ndarray  # mean columns; each std column follows its mean
    window_positions: np.ndarray  # one row per window
    window_min_periods: np.ndarray
    profile_columns: np.ndarray
    profile_positions: np.ndarray  # one row per (days, horizon)
    profile_min_periods: np.ndarray
    covariates: tuple[str, ...]
    covariate_now_columns: np.ndarray
    covariate_change_columns: np.ndarray
    covariate_change_1_columns: np.ndarray  # -1: the covariate has none
    relative_columns: np.ndarray  # see kernels.origin_rows; -1: not in the spec
    fixed_columns: np.ndarray  # see kernels.origin_rows
    sensor_codes: dict[int, float]
    columns: dict[str, int]


@lru_cache(maxsize=16)
def _plan(spec: FeatureSpec) -> _Plan:
    columns = {name: i for i, name in enumerate(spec.feature_columns)}
    lookback = max(
        (
            *spec.lags,
            *spec.windows,
            24,
            3 + COVARIATE_FILL_HOURS,
            spec.max_fill_hours,
            24 * max(PROFILE_DAYS),
        )
    )
    pad = lookback + 1

    def padded(rows: list[list[int]]) -> np.ndarray:
        width = max((len(r) for r in rows), default=0)
        return np.array([r + [pad] * (width - len(r)) for r in rows], dtype=np.int64)

    # The sensor's recent daily profile at the hour being forecast: the mean of the values at
    # t+h-24k over the last 7 and 28 days, all known at t. The long horizons lean on it.
    profiles = [(d, h) for d in PROFILE_DAYS for h in spec.horizons if h <= 24]
    return _Plan(
        width=len(columns),
        lookback=lookback,
        lag_columns=np.array([columns[f"lag_{k}"] for k in spec.lags], dtype=np.int64),
        lag_positions=lookback - np.array(spec.lags, dtype=np.int64),
        window_columns=np.array([columns[f"mean_{w}"] for w in spec.windows], dtype=np.int64),
        window_positions=padded(
            [list(range(lookback - w + 1, lookback + 1)) for w in spec.windows]
        ),
        window_min_periods=np.array([max(1, w // 3) for w in spec.windows]),
        profile_columns=np.array(
            [columns[f"same_hour_{d}d_h{h}"] for d, h in profiles], dtype=np.int64
        ),
        profile_positions=padded(
            [[lookback + h - 24 * k for k in range(1, d + 1)] for d, h in profiles]
        ),
        profile_min_periods=np.array([max(1, d // 4) for d, _ in profiles]),
        covariates=spec.covariates,
        covariate_now_columns=np.array(
            [columns[f"{p}_now"] for p in spec.covariates], dtype=np.int64
        ),
        covariate_change_columns=np.array(
            [columns[f"{p}_change_3"] for p in spec.covariates], dtype=np.int64
        ),
        covariate_change_1_columns=np.array(
            [columns.get(f"{p}_change_1", -1) for p in spec.covariates], dtype=np.int64
        ),
        relative_columns=np.array(
            [columns.get(name, -1) for name in RELATIVE_COLUMNS], dtype=np.int64
        ),
        fixed_columns=np.array(
            [
                columns[name]
                for name in (
                    "hours_since_reading",
                    "level",
                    "max_24",
                    "change_1",
                    "change_3",
                    "change_24",
                )
            ],
            dtype=np.int64,
        ),
        sensor_codes=spec.sensor_code_of,
        columns=columns,
    )


# ---------------------------------------------------------------------------------------------
# Local time


def local_calendar(
    hours: np.ndarray, timezone: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local hour of day (with minutes), weekday (Monday 0) and day of the year at each
    epoch hour in `timezone` (see `check_timezone`)."""
    hours = np.asarray(hours, dtype=np.int64)
    if hours.size == 1:  # a request's origin: the same few hours again and again
        return _calendar_at(int(hours[0]), timezone or "")
    zone = _zone(timezone or "")
    if zone is None:
        offsets: np.ndarray | int = 0
    elif isinstance(zone, dt.timedelta):
        offsets = int(zone.total_seconds())
    else:  # a named zone: its offset hour by hour, each distinct hour looked up once
        distinct, inverse = np.unique(hours, return_inverse=True)
        offsets = np.array([_offset_seconds(timezone or "", h) for h in distinct.tolist()])
        offsets = offsets[inverse.reshape(-1)]
    local = hours * 3600 + offsets
    days = local // 86400
    in_day = local - days * 86400
    hour = in_day // 3600 + (in_day % 3600 // 60) / 60
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    date = days.astype("datetime64[D]")
    day_of_year = (date - date.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64) + 1
    return hour.astype(np.float64), weekday.astype(np.float64), day_of_year.astype(np.float64)


@lru_cache(maxsize=65536)
def _calendar_at(hour: int, timezone: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`local_calendar` of one hour (computed as for many, then kept)."""
    parts = tuple(part[:1] for part in local_calendar(np.array([hour, hour]), timezone))
    for part in parts:
        part.setflags(write=False)  # shared by every caller
    return parts  # type: ignore[return-value]


@lru_cache(maxsize=65536)
def _offset_seconds(timezone: str, hour: int) -> int:
    utc = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=hour)
    offset = utc.astimezone(_zone(timezone)).utcoffset()  # type: ignore[arg-type]
    return int(offset.total_seconds()) if offset is not None else 0


def check_timezone(timezone: str | None) -> None:
    """Raise ValueError unless `timezone` is one the features understand: empty, "UTC",
    "Z", an IANA name, or a "+HH:MM" offset within ±18:00."""
    _zone(timezone or "")


@lru_cache(maxsize=512)
def _zone(timezone: str) -> dt.timedelta | ZoneInfo | None:
    if not timezone or timezone in {"UTC", "+00:00", "Z"}:
        return None
    match = _OFFSET.match(timezone)
    if match:
        sign = 1 if match.group(1) == "+" else -1
        hours, minutes = int(match.group(2)), int(match.group(3))
        offset = dt.timedelta(hours=hours, minutes=minutes)
        if minutes >= 60 or offset > _MAX_OFFSET:
            raise ValueError(f"UTC offset {timezone!r} is out of range (at most ±18:00)")
        return sign * offset
    try:
        return ZoneInfo(timezone)
    except Exception as exc:  # ZoneInfo raises several types for bad keys
        raise ValueError(
            f"unknown time zone {timezone!r}: expected an IANA name or ±HH:MM"
        ) from exc


def as_float32(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its float64 columns as float32: how a training set is stored and learnt
    from. Exact enough (readings carry fewer than 7 significant digits, and the boosters
    learn from float32 anyway, `feature_matrix`), and half the memory: 1,000 sensors × 90
    days are 2 M rows of 66 float columns."""
    return frame.astype({c: np.float32 for c, t in frame.dtypes.items() if t == np.float64})


def feature_matrix(frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """The float32 matrix a model predicts from, columns in the spec's order. Sensor identity
    is re-coded with this spec's own sensor list, so a model trained on other sensors reads
    the same frame correctly (an unknown sensor is missing, not another sensor)."""
    matrix = frame[spec.feature_columns].to_numpy(dtype=np.float32, na_value=np.nan)
    matrix[:, spec.feature_columns.index("sensor_code")] = sensor_codes(frame["sensor_id"], spec)
    return matrix


def sensor_codes(sensor_ids: pd.Series, spec: FeatureSpec) -> np.ndarray:
    return sensor_ids.map(spec.sensor_code_of).to_numpy(dtype=np.float32, na_value=np.nan)


def drift_view(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Scale-free views of feature rows, the columns drift is judged on: variability and changes
    relative to the day's level, and the log ratio to each co-located pollutant measured in the
    target's units and to the other sensors of the network at the same hour. Weather moves
    every pollutant of a place, and a city's sensors, together, so these hold still through an
    episode, while a sensor that reads 1.5 times as high, gets noisier or sticks changes them
    at once. Log ratios (of values + 1) because plain ones explode where the other value nears
    zero, and a day's few such hours would decide the distance. Rows without a reading are
    left out."""
    # A ratio to a temperature that crosses zero means nothing; the network's is below. Nor
    # does one across units: 1 added to a gas at 0.02 ppm swamps it, and the "ratio" of PM2.5
    # in µg/m³ to it was PM2.5's own level, which moves with the weather.
    units = DEFAULT_UNITS.get(spec.parameter)
    ratios = [
        p
        for p in spec.covariates
        if p not in WEATHER and p != NETWORK and DEFAULT_UNITS.get(p) == units
    ]
    # Only the columns read are copied: a training set has 70 (0.6 GB at 1,000 sensors).
    columns = ["datetime_utc", "y", "mean_24", "std_24", "change_1", "change_24"]
    frame = frame.loc[frame["y"].notna(), columns + [f"{p}_now" for p in ratios]]
    mean = frame["mean_24"].where(frame["mean_24"].abs() > 1e-9)
    view = {
        "cv_24": frame["std_24"] / mean,
        "relative_change_1": frame["change_1"] / mean,
        "relative_change_24": frame["change_24"] / mean,
    }
    log_y = np.log1p(frame["y"].clip(lower=0))
    for p in ratios:
        view[f"log_ratio_to_{p}"] = log_y - np.log1p(frame[f"{p}_now"].clip(lower=0))
    # The mean of the other sensors' values at the hour (none with fewer than two sensors).
    by_hour = frame.groupby("datetime_utc")["y"]
    others = (by_hour.transform("sum") - frame["y"]) / (by_hour.transform("count") - 1)
    view["log_ratio_to_network"] = log_y - np.log1p(others.clip(lower=0))
    return pd.DataFrame(view, index=frame.index).replace([np.inf, -np.inf], np.nan)
