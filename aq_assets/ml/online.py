"""Forecasts at one origin from one sensor's recent history: what the HTTP service runs on
every request. The batch path (`forecasting.latest_forecasts`) builds the feature rows of
every hour with pandas and keeps the last; a request needs only the row at the origin, so
this computes exactly that row from the series' arrays.

Same input, same numbers: the values go through the same cleaning rules as `clean_readings`
(reimplemented as loops, with its constants), the row holds what `build_features` puts at
the origin, and the forecast is `Forecaster.predict`'s arithmetic (level + booster change,
blended by the forecaster's own `BlendTable` with persistence and climatology).
`aq_assets_tests/test_online_features_vector.py` proves it on random and simulated histories,
and that a series in a batch gets exactly what it gets alone. Every feature is equal to the
bit except the rolling means and standard deviations: pandas slides one running sum along
the whole series, so its sums carry rounding from every value that passed through, where
this sums each window afresh. They differ in the last bits (more after very large values),
which the float32 matrix the boosters read almost always absorbs; forecasts agree to float32
tolerance.

The work is done by loops compiled with numba (`kernels`), a batch of series in one call
each: array operations cost ~1-3 µs a call whatever their size, and a request needed a few
hundred of them. This module prepares their inputs. Measured in process (2 shared cores, a
1,231-tree model, 10 co-located parameters, `benchmarks/serving_cpu.py`): one series with a
month of history and its co-located parameters ~0.4 ms of CPU for the whole request, of
which cleaning ~0.05 ms, the feature row ~0.04 ms and every horizon's trees ~0.02 ms; the
batch path on the same input (`latest_forecasts`) takes ~50 ms a series.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from aq_assets.ml.cleaning import (
    PLAUSIBLE_RANGES,
    SPIKE_MIN_EXCESS,
    PlausibleRange,
)
from aq_assets.ml.features import _OFFSET, PROFILE_DAYS, FeatureSpec
from aq_assets.ml.model import RECENT_MEANS, Forecaster

SECONDS_PER_HOUR = 3600
_EPOCH = dt.datetime(1970, 1, 1)
_COVARIATE_FILL_HOURS = 2  # build_features fills a co-located value forward at most this long
# Offsets beyond any real zone's are refused rather than turned into nonsense local times.
_MAX_OFFSET = dt.timedelta(hours=18)


@dataclass(frozen=True)
class HourlySeries:
    """One cleaned value per hour: `hours` (int64 hours since 1970-01-01 UTC, strictly
    increasing) and `values` (float64), as `clean_readings` leaves a sensor's rows."""

    hours: np.ndarray
    values: np.ndarray

    @classmethod
    def empty(cls) -> HourlySeries:
        return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))

    def __len__(self) -> int:
        return int(self.hours.size)


# ---------------------------------------------------------------------------------------------
# Cleaning: clean_readings' rules for one sensor's readings


def clean_series(
    seconds: np.ndarray,
    values: np.ndarray,
    parameter: str,
    units: str | np.ndarray,
) -> HourlySeries:
    """One sensor's raw readings (epoch seconds UTC, values with NaN for nulls; `units` one
    string or one per reading) cleaned as `clean_readings` cleans them: nulls, sentinels and
    implausible values dropped, small negatives clipped, readings averaged within the hour,
    isolated spikes dropped."""
    return clean_many([RawSeries(seconds, values, parameter, units)])[0]


@dataclass(frozen=True)
class RawSeries:
    """One sensor's raw readings, as `clean_series` takes them."""

    seconds: np.ndarray
    values: np.ndarray
    parameter: str
    units: str | np.ndarray


def clean_many(batch: Sequence[RawSeries]) -> list[HourlySeries]:
    """`clean_series` of each series, in one compiled pass over all of them
    (`kernels.clean_series`)."""
    from aq_assets.ml.kernels import clean_series as compiled

    if not batch:
        return []
    lengths = [len(raw.values) for raw in batch]
    offsets = np.zeros(len(batch) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate([np.asarray(raw.values, dtype=np.float64) for raw in batch])
    hours = np.concatenate([np.asarray(raw.seconds, dtype=np.int64) for raw in batch])
    hours //= SECONDS_PER_HOUR
    # The plausible range of every reading: low, high, tolerance.
    if all(isinstance(raw.units, str) for raw in batch):  # a request: units per series
        ranges = np.array([_range_of(raw.parameter, str(raw.units)) for raw in batch])
        bounds = np.repeat(ranges.T, lengths, axis=1)
    else:
        bounds = np.empty((3, values.size))
        for raw, a, b in zip(batch, offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
            for k, part in enumerate(_bounds(raw.parameter, raw.units, b - a)):
                bounds[k, a:b] = part
    excess = np.array([SPIKE_MIN_EXCESS.get(raw.parameter, np.nan) for raw in batch])
    # Each series in order of hour; readings within an hour keep their order.
    steps = np.diff(hours)
    steps[offsets[1:-1][(offsets[1:-1] > 0) & (offsets[1:-1] < hours.size)] - 1] = 0
    if (steps < 0).any():
        series = np.repeat(np.arange(len(batch)), lengths)
        order = np.lexsort((hours, series))
        values, hours, bounds = values[order], hours[order], bounds[:, order]
    low, high, tolerance = bounds
    hourly_hours, hourly, cuts = compiled(values, hours, low, high, tolerance, offsets, excess)
    return [
        HourlySeries(hourly_hours[a:b], hourly[a:b]) for a, b in itertools.pairwise(cuts.tolist())
    ]


def compile_kernels() -> None:
    """Compile the loops of cleaning, location means and features now (or load them from
    numba's cache), not in the first request."""
    series = clean_series(np.array([0, 3600]), np.array([1.0, 2.0]), "pm25", "µg/m³")
    location_mean([series, series])
    origin_feature_rows(FeatureSpec(), [Origin(series, {"pm10": series}, 0)])


def location_mean(series: Sequence[HourlySeries]) -> HourlySeries:
    """The mean per hour over several sensors of one parameter at one location, as
    `build_features` aligns co-located parameters (its pivot table). Pass the sensors in
    ascending sensor id, the order the pivot table sums them in."""
    series = [s for s in series if len(s)]
    if not series:
        return HourlySeries.empty()
    if len(series) == 1:
        return series[0]
    hours = np.concatenate([s.hours for s in series])
    values = np.concatenate([s.values for s in series])
    order = np.argsort(hours, kind="stable")
    from aq_assets.ml.kernels import hour_means

    merged_hours, merged_values = hour_means(hours[order], values[order])
    return HourlySeries(merged_hours, merged_values)


@dataclass(frozen=True)
class SensorHistory:
    """A sensor's cleaned readings and where it stands."""

    sensor_id: int
    location_id: int
    parameter: str
    series: HourlySeries


@dataclass(frozen=True)
class ReadingsHistory:
    """Cleaned readings of several sensors: each sensor's series, and each location's mean
    series per parameter (what a target sensor's co-located parameters are read from)."""

    sensors: dict[int, SensorHistory]
    locations: dict[int, dict[str, HourlySeries]]

    def covariates_of(self, sensor_id: int) -> dict[str, HourlySeries]:
        return self.locations.get(self.sensors[sensor_id].location_id, {})


def readings_history(
    sensor_id: np.ndarray,
    location_id: np.ndarray,
    parameter: np.ndarray,
    units: np.ndarray,
    seconds: np.ndarray,
    values: np.ndarray,
) -> ReadingsHistory:
    """Raw readings as columns (one sensor = one parameter at one location, the first row's)
    → every sensor cleaned as by `clean_series` and every location's parameters averaged over
    its sensors by `location_mean`, as clean_readings + build_features see them."""
    sensor_id = np.asarray(sensor_id, dtype=np.int64)
    order = np.argsort(sensor_id, kind="stable")
    ids = sensor_id[order]
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(ids)) + 1, [ids.size]])
    # The rows of each sensor.
    groups = [order[a:b] for a, b in itertools.pairwise(bounds.tolist()) if a != b]
    seconds, values, units = np.asarray(seconds), np.asarray(values), np.asarray(units)
    cleaned = clean_many(
        [
            RawSeries(seconds[rows], values[rows], str(parameter[rows[0]]), units[rows])
            for rows in groups
        ]
    )
    sensors: dict[int, SensorHistory] = {}
    members: dict[tuple[int, str], list[HourlySeries]] = {}
    for rows, clean in zip(groups, cleaned, strict=True):
        first = rows[0]
        history = SensorHistory(
            sensor_id=int(sensor_id[first]),
            location_id=int(location_id[first]),
            parameter=str(parameter[first]),
            series=clean,
        )
        sensors[history.sensor_id] = history
        # Ascending sensor id, the order the batch path's pivot table averages them in.
        members.setdefault((history.location_id, history.parameter), []).append(history.series)
    locations: dict[int, dict[str, HourlySeries]] = {}
    for (location, name), series in members.items():
        locations.setdefault(location, {})[name] = location_mean(series)
    return ReadingsHistory(sensors, locations)


def _bounds(
    parameter: str, units: str | np.ndarray, n: int
) -> tuple[np.ndarray | float, np.ndarray | float, np.ndarray | float]:
    """low, high, tolerance of the plausible range (NaN where the pair is unknown)."""
    if isinstance(units, str) or np.ndim(units) == 0:
        return _range_of(parameter, str(units))
    names, inverse = np.unique(np.asarray(units, dtype=str), return_inverse=True)
    table = np.array([_range_of(parameter, str(u)) for u in names], dtype=np.float64)
    rows = table[inverse.reshape(-1)] if n else np.empty((0, 3))
    return rows[:, 0], rows[:, 1], rows[:, 2]


def _range_of(parameter: str, units: str) -> tuple[float, float, float]:
    known: PlausibleRange | None = PLAUSIBLE_RANGES.get((parameter, units))
    if known is None:
        return np.nan, np.nan, np.nan
    return float(known.low), float(known.high), float(known.negative_tolerance)


# ---------------------------------------------------------------------------------------------
# Features at the origin: build_features' row at `until`


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
            3 + _COVARIATE_FILL_HOURS,
            spec.max_fill_hours,
            24 * max(PROFILE_DAYS),
        )
    )
    pad = lookback + 1

    def padded(rows: list[list[int]]) -> np.ndarray:
        width = max((len(r) for r in rows), default=0)
        return np.array([r + [pad] * (width - len(r)) for r in rows], dtype=np.int64)

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
        # The mean of the values at t+h-24k, k = 1..days (same UTC hour, earlier days).
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
        sensor_codes={sensor: float(i) for i, sensor in enumerate(spec.sensors)},
        columns=columns,
    )


def origin_features(
    spec: FeatureSpec,
    target: HourlySeries,
    covariates: Mapping[str, HourlySeries],
    origin: int,
    sensor_id: int | None = None,
    timezone: str | None = None,
) -> np.ndarray | None:
    """The feature row (float64, `spec.feature_columns` order) that `build_features` gives
    the target sensor at hour `origin` (epoch hours), from its cleaned series and the
    location's cleaned co-located parameters; None where it gives no row (no reading at or
    before the origin). Readings after the origin are ignored, as `until` ignores them."""
    rows, valid = origin_feature_rows(
        spec, [Origin(target, covariates, origin, sensor_id, timezone)]
    )
    return rows[0] if valid[0] else None


@dataclass(frozen=True)
class Origin:
    """One series to forecast: the target's cleaned series, the location's cleaned
    co-located parameters, the origin hour (epoch hours), the sensor and its time zone."""

    target: HourlySeries
    covariates: Mapping[str, HourlySeries]
    origin: int
    sensor_id: int | None = None
    timezone: str | None = None


def origin_feature_rows(
    spec: FeatureSpec, items: Sequence[Origin]
) -> tuple[np.ndarray, np.ndarray]:
    """`origin_features` of many series in one compiled pass (`kernels.origin_rows`): the
    rows (n × features) and whether each has one (a row without is all NaN)."""
    from aq_assets.ml.kernels import origin_rows

    plan = _plan(spec)
    col = plan.columns
    n = len(items)
    rows = np.full((n, plan.width), np.nan)
    valid = np.zeros(n, dtype=np.bool_)
    origins = np.array([item.origin for item in items], dtype=np.int64)
    if any(item.covariates for item in items):
        empty = HourlySeries.empty()
        covariates = _laid_end_to_end(
            [item.covariates.get(p, empty) for item in items for p in plan.covariates]
        )
    else:  # none sent: those features stay missing
        none = np.zeros(n * len(plan.covariates) + 1, dtype=np.int64)
        covariates = (np.empty(0, dtype=np.int64), np.empty(0), none)
    origin_rows(
        rows,
        valid,
        origins,
        *_laid_end_to_end([item.target for item in items]),
        *covariates,
        plan.lookback,
        spec.max_fill_hours,
        _COVARIATE_FILL_HOURS,
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
    )
    hour, weekday, day_of_year = (
        np.array(
            [
                _calendar(item.origin, item.timezone) if ok else (0.0, 0, 0)
                for item, ok in zip(items, valid.tolist(), strict=True)
            ],
            dtype=np.float64,
        )
        .reshape(n, 3)
        .T
    )
    rows[:, col["hour_sin"]] = np.sin(2 * np.pi * hour / 24)
    rows[:, col["hour_cos"]] = np.cos(2 * np.pi * hour / 24)
    rows[:, col["day_of_week"]] = weekday
    rows[:, col["is_weekend"]] = (weekday >= 5).astype(np.float64)
    rows[:, col["doy_sin"]] = np.sin(2 * np.pi * day_of_year / 365.25)
    rows[:, col["doy_cos"]] = np.cos(2 * np.pi * day_of_year / 365.25)
    rows[:, col["sensor_code"]] = [
        plan.sensor_codes.get(int(item.sensor_id), np.nan) if item.sensor_id is not None else np.nan
        for item in items
    ]
    rows[~valid] = np.nan
    return rows, valid


def _laid_end_to_end(series: Sequence[HourlySeries]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hours, values and offsets of several series, one after the other."""
    offsets = np.zeros(len(series) + 1, dtype=np.int64)
    np.cumsum([s.hours.size for s in series], out=offsets[1:])
    if not offsets[-1]:
        return np.empty(0, dtype=np.int64), np.empty(0), offsets
    hours = np.concatenate([s.hours for s in series]).astype(np.int64, copy=False)
    values = np.concatenate([s.values for s in series]).astype(np.float64, copy=False)
    return hours, values, offsets


@lru_cache(maxsize=65536)
def _calendar(hour: int, timezone: str | None) -> tuple[float, int, int]:
    """Local hour of day (with minutes), weekday and day of the year at epoch hour `hour`."""
    local = local_time(hour, timezone)
    return local.hour + local.minute / 60, local.weekday(), local.timetuple().tm_yday


# ---------------------------------------------------------------------------------------------
# Local time


def check_timezone(timezone: str | None) -> None:
    """Raise ValueError unless `timezone` is one build_features understands: empty, "UTC",
    "Z", an IANA name, or a "+HH:MM" offset within ±18:00."""
    _zone(timezone or "")


def local_time(hour: int, timezone: str | None) -> dt.datetime:
    """Wall-clock time at epoch hour `hour` in `timezone` (naive)."""
    utc = _EPOCH + dt.timedelta(hours=int(hour))
    zone = _zone(timezone or "")
    if zone is None:
        return utc
    if isinstance(zone, dt.timedelta):
        return utc + zone
    return utc.replace(tzinfo=dt.UTC).astimezone(zone).replace(tzinfo=None)


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


# ---------------------------------------------------------------------------------------------
# The forecaster on feature rows


class OnlineForecaster:
    """`Forecaster.predict` for rows built by `origin_features`, without pandas: every
    horizon's trees in one compiled call (`trees.TreeEnsemble`), then the forecaster's own
    blend (`BlendTable`)."""

    def __init__(self, forecaster: Forecaster) -> None:
        self.spec = forecaster.spec
        self.horizons = tuple(forecaster.spec.horizons)
        self._forecaster = forecaster
        self._table = forecaster.blend_table()
        columns = self.spec.feature_columns
        self.level_index = columns.index("level")
        self._recent_means = [columns.index(c) for c in RECENT_MEANS if c in columns]
        self.compiled_error: str | None = None
        self._changes = self._predictor(len(columns))

    @property
    def is_baseline(self) -> bool:
        """A baseline forecaster: no trees, its blend alone forecasts."""
        return self._forecaster.is_baseline

    @property
    def compiled(self) -> bool:
        """Whether the trees run compiled (else through XGBoost, horizon by horizon)."""
        return self.compiled_error is None

    def _predictor(self, n_features: int) -> Callable[[np.ndarray], np.ndarray]:
        """float32 rows -> the boosters' changes (rows × horizons): compiled when that
        predicts exactly what `inplace_predict` of each horizon's booster does on rows that
        take every branch. A baseline forecaster (no boosters) changes nothing."""
        if self._forecaster.is_baseline:
            return self._forecaster.changes
        boosters = [self._forecaster.boosters[h] for h in self.horizons]
        try:
            from aq_assets.ml.trees import TreeEnsemble

            ensemble = TreeEnsemble.from_boosters(boosters)
            probe = ensemble.edge_rows(n_features)
            expected = np.column_stack([b.inplace_predict(probe) for b in boosters])
            if not np.array_equal(ensemble.predict(probe), expected):
                raise ValueError("its predictions differ from XGBoost's on the probe rows")
            return ensemble.predict
        except (ImportError, ValueError, KeyError) as exc:  # numba missing, a layout unknown
            self.compiled_error = f"{type(exc).__name__}: {exc}"
        return self._forecaster.changes

    def predict(
        self,
        rows: np.ndarray,
        sensor_ids: Sequence[int | None],
        origins: Sequence[int],
    ) -> np.ndarray:
        """Forecasts (n rows × horizons, float64) from feature rows (n × features, float64),
        the rows' sensors and origin hours; NaN where a row has no current level."""
        rows = np.atleast_2d(rows)
        n = rows.shape[0]
        if n == 0:
            return np.empty((0, len(self.horizons)))
        matrix = np.ascontiguousarray(rows, dtype=np.float32)
        return self._table.forecast(
            level=rows[:, self.level_index],
            changes=self._changes(matrix),
            sensor_rows=self._table.rows_of(sensor_ids),
            origin_hours=np.asarray(origins, dtype=np.int64) % 24,
            recent_means=rows[:, self._recent_means]
            if len(self._recent_means) == len(RECENT_MEANS)
            else np.full((n, len(RECENT_MEANS)), np.nan),  # a spec without them: left out
        )
