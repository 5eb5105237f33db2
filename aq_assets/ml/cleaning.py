"""Cleaning raw readings into one trustworthy value per sensor and hour: the one
implementation that training, batch predictions and the HTTP service call.

Every parameter comes out in one unit (`DEFAULT_UNITS`): networks report gases in ppm or
µg/m³ (OpenAQ keeps both, as separate parameters of one name) and temperature in °C or °F,
and one location's no2 beside another's, or a sensor against its network, means nothing
across units.

Every step looks only at the reading itself or at earlier hours, so the same rules clean a
forecast's input history without seeing the future. Gaps stay gaps: nothing here invents a
value. The rules run as loops compiled by numba (`kernels.clean_series`, every series of a
call in one pass): a request holds a few thousand readings, where array operations cost
~1-3 µs a call whatever their size. `aq_assets_tests/oracle.py` states the same rules as
whole-frame pandas and the tests hold the two equal.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class PlausibleRange:
    """Physically plausible values of a parameter in given units. Values a little below zero
    are instrument noise at low concentrations, down to `low - negative_tolerance`."""

    low: float
    high: float
    negative_tolerance: float


# In each parameter's cleaned units (DEFAULT_UNITS).
PLAUSIBLE_RANGES: dict[tuple[str, str], PlausibleRange] = {
    ("pm25", "µg/m³"): PlausibleRange(0, 1000, 10),
    ("pm10", "µg/m³"): PlausibleRange(0, 2000, 10),
    ("pm1", "µg/m³"): PlausibleRange(0, 1000, 10),
    ("o3", "ppm"): PlausibleRange(0, 0.6, 0.01),
    ("no2", "ppm"): PlausibleRange(0, 2, 0.01),
    ("no", "ppm"): PlausibleRange(0, 2, 0.01),
    ("nox", "ppm"): PlausibleRange(0, 3, 0.01),
    ("so2", "ppm"): PlausibleRange(0, 2, 0.01),
    ("co", "ppm"): PlausibleRange(0, 50, 0.1),
    ("temperature", "c"): PlausibleRange(-60, 60, 0),
    ("relativehumidity", "%"): PlausibleRange(0, 100, 1),
}

# The units each parameter is cleaned into, and assumed when nothing says.
DEFAULT_UNITS: dict[str, str] = {parameter: units for parameter, units in PLAUSIBLE_RANGES}

# g/mol; nox counts as no2, as air-quality networks report it.
_MOLAR_MASS = {"o3": 48.00, "no2": 46.01, "no": 30.01, "nox": 46.01, "so2": 64.07, "co": 28.01}
_MOLAR_VOLUME = 24.45  # litres per mole at 25 °C and 1 atm (the US EPA's convention)
# Other units a parameter arrives in: (parameter, units) -> (scale, shift) into its
# DEFAULT_UNITS, value × scale + shift.
UNIT_CONVERSIONS: dict[tuple[str, str], tuple[float, float]] = {
    ("temperature", "f"): (5 / 9, -32 * 5 / 9),
    **{(gas, "ppb"): (1e-3, 0.0) for gas in _MOLAR_MASS},
    **{(gas, "µg/m³"): (_MOLAR_VOLUME / (1000 * m), 0.0) for gas, m in _MOLAR_MASS.items()},
    **{(gas, "mg/m³"): (_MOLAR_VOLUME / m, 0.0) for gas, m in _MOLAR_MASS.items()},
}


def lowest_plausible(parameter: str) -> float:
    """The lowest value a cleaned reading of `parameter` takes (small negatives are clipped
    up to it), −inf for a parameter without a plausible range."""
    known = PLAUSIBLE_RANGES.get((parameter, DEFAULT_UNITS.get(parameter, "")))
    return -np.inf if known is None else float(known.low)


# Other spellings of the units above, as networks and clients write them (after lower case,
# without spaces, Greek mu as the micro sign, "ug"/"mcg" as "µg" and m3/m^3/m-3 as "/m³").
_UNIT_SPELLINGS = {
    "°c": "c",
    "degc": "c",
    "celsius": "c",
    "°f": "f",
    "degf": "f",
    "fahrenheit": "f",
    "ppmv": "ppm",
    "ppbv": "ppb",
    "percent": "%",
    "%rh": "%",
}
_KNOWN_UNITS = {units for _, units in [*PLAUSIBLE_RANGES, *UNIT_CONVERSIONS]}
_CUBIC_METRE = re.compile(r"/?m(\^|\*\*|-)?3$")


@lru_cache(maxsize=256)
def canonical_units(units: str) -> str:
    """`units` in the spelling the ranges and conversions above use ("ug/m3", "μg/m^3" and
    "µg m-3" are "µg/m³"; "°F" is "f"), or as sent when it is none of theirs."""
    key = str(units).strip().lower().replace(" ", "").replace("\u03bc", "\u00b5")
    key = re.sub(r"^(ug|mcg)", "µg", key)
    key = _CUBIC_METRE.sub("/m³", key) if key.startswith(("µg", "mg")) else key
    key = _UNIT_SPELLINGS.get(key, key)
    return key if key in _KNOWN_UNITS else units


# Placeholders some networks write for "no data"; never a measurement.
SENTINELS = (-999.0, -9999.0, 9999.0, 99999.0)

# A reading this many times its recent level (the higher of the trailing 24-hour median and
# the last 3 hours' maximum), and this far above it, is an isolated instrument spike.
SPIKE_RATIO = 10.0
SPIKE_MIN_EXCESS = {"pm25": 150.0, "pm10": 300.0}


def plausible_bounds(readings: pd.DataFrame) -> pd.DataFrame:
    """Columns low, high, tolerance per row of `readings`, in the row's own units (NaN where
    the pair is unknown)."""
    ranges = pd.DataFrame(
        [(p, u, *_plausible_in(p, u)) for p, u in [*PLAUSIBLE_RANGES, *UNIT_CONVERSIONS]],
        columns=["parameter", "units", "low", "high", "tolerance"],
    )
    keys = readings[["parameter", "units"]].astype(str)
    keys["units"] = keys["units"].map(canonical_units)
    merged = keys.merge(ranges, on=["parameter", "units"], how="left")
    return merged[["low", "high", "tolerance"]].set_index(readings.index)


@dataclass
class CleaningReport:
    """How many readings each rule touched, for metadata and for trust."""

    rows_in: int = 0
    null_values: int = 0
    sentinels: int = 0
    implausible: int = 0
    negatives_clipped: int = 0
    spikes: int = 0
    repeated_hours: int = 0
    hours_out: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class HourlySeries:
    """One cleaned value per hour: `hours` (int64 hours since 1970-01-01 UTC, strictly
    increasing) and `values` (float64)."""

    hours: np.ndarray
    values: np.ndarray

    @classmethod
    def empty(cls) -> HourlySeries:
        return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))

    def __len__(self) -> int:
        return int(self.hours.size)


# Several series laid end to end: hours, values and offsets (series k is
# offsets[k]:offsets[k + 1]), one array each, as the compiled loops read and write them.
LaidSeries = tuple[np.ndarray, np.ndarray, np.ndarray]


def series_of(laid: LaidSeries) -> list[HourlySeries]:
    """Each of the laid series, as a view (no copy)."""
    hours, values, offsets = laid
    return [HourlySeries(hours[a:b], values[a:b]) for a, b in itertools.pairwise(offsets.tolist())]


def laid_end_to_end(series: Sequence[HourlySeries]) -> LaidSeries:
    """Hours, values and offsets of several series, one after the other (copied): the
    inverse of `series_of`."""
    offsets = np.zeros(len(series) + 1, dtype=np.int64)
    np.cumsum([s.hours.size for s in series], out=offsets[1:])
    if not offsets[-1]:
        return np.empty(0, dtype=np.int64), np.empty(0), offsets
    hours = np.concatenate([s.hours for s in series]).astype(np.int64, copy=False)
    values = np.concatenate([s.values for s in series]).astype(np.float64, copy=False)
    return hours, values, offsets


@dataclass(frozen=True)
class RawSeries:
    """One sensor's raw readings: epoch seconds UTC, values (NaN for null), its parameter,
    and its units (one string, or one per reading)."""

    seconds: np.ndarray
    values: np.ndarray
    parameter: str
    units: str | np.ndarray


def clean_series(
    seconds: np.ndarray, values: np.ndarray, parameter: str, units: str | np.ndarray
) -> HourlySeries:
    """One sensor's raw readings cleaned: nulls, sentinels and implausible values dropped,
    small negatives clipped, readings averaged within the hour, isolated spikes dropped."""
    return clean_many([RawSeries(seconds, values, parameter, units)])[0]


def clean_many(batch: Sequence[RawSeries]) -> list[HourlySeries]:
    """`clean_series` of each series, in one compiled pass over all of them."""
    cleaned, _ = _clean_with_counts(batch)
    return cleaned


def clean_laid(
    seconds: np.ndarray,
    values: np.ndarray,
    offsets: np.ndarray,
    parameters: Sequence[str],
    units: Sequence[str],
) -> LaidSeries:
    """`clean_many` of series laid end to end (series g is offsets[g]:offsets[g+1] of
    `seconds` and `values`), one parameter and units each: a request's lists as its reader
    lays them out, cleaned without a copy per series or a plausible range per reading, and
    laid end to end in the same order."""
    per_series = [_range_of(p, u) for p, u in zip(parameters, units, strict=True)]
    rules = np.array(per_series).reshape(-1, 5).T
    offsets = np.asarray(offsets, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if {rule[3:] for rule in per_series} - {(1.0, 0.0)}:  # some series converts
        values = _converted(values, rules[3:], np.diff(offsets))
    excess = np.array([SPIKE_MIN_EXCESS.get(p, np.nan) for p in parameters])
    cleaned, _ = _clean_laid(
        np.asarray(seconds, dtype=np.int64) // SECONDS_PER_HOUR,
        values,
        offsets,
        rules[:3],
        excess,
        per_series=True,
    )
    return cleaned


def _clean_with_counts(batch: Sequence[RawSeries]) -> tuple[list[HourlySeries], np.ndarray]:
    """The cleaned series and, per series, how many readings each rule touched
    (`kernels.COUNTS` columns)."""
    from aq_assets.ml.kernels import COUNTS

    if not batch:
        return [], np.zeros((0, len(COUNTS)), dtype=np.int64)
    lengths = [len(raw.values) for raw in batch]
    offsets = np.zeros(len(batch) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate([np.asarray(raw.values, dtype=np.float64) for raw in batch])
    hours = np.concatenate([np.asarray(raw.seconds, dtype=np.int64) for raw in batch])
    hours //= SECONDS_PER_HOUR
    # The plausible range (low, high, tolerance) and the conversion (scale, shift) of each
    # series, or of each reading.
    per_series = all(isinstance(raw.units, str) for raw in batch)
    if per_series:
        rules = np.array([_range_of(raw.parameter, str(raw.units)) for raw in batch]).T
        values = _converted(values, rules[3:], np.diff(offsets))
    else:
        rules = np.empty((5, values.size))
        for raw, a, b in zip(batch, offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
            rules[:, a:b] = _rules(raw.parameter, raw.units, b - a)
        values = _converted(values, rules[3:])
    excess = np.array([SPIKE_MIN_EXCESS.get(raw.parameter, np.nan) for raw in batch])
    cleaned, counts = _clean_laid(hours, values, offsets, rules[:3], excess, per_series)
    return series_of(cleaned), counts


def _converted(
    values: np.ndarray, conversion: np.ndarray, lengths: np.ndarray | None = None
) -> np.ndarray:
    """`values` into their parameter's DEFAULT_UNITS: × scale + shift, the two rows of
    `conversion`, one column per reading or, with `lengths`, per series of that many
    readings; SENTINELS stay as they are, to be recognized. The same array when nothing
    converts (most calls: a request's pm25)."""
    scale, shift = conversion
    if not ((scale != 1.0) | (shift != 0.0)).any():
        return values
    if lengths is not None:
        scale, shift = np.repeat(scale, lengths), np.repeat(shift, lengths)
    return np.where(np.isin(values, SENTINELS), values, values * scale + shift)


def _clean_laid(
    hours: np.ndarray,
    values: np.ndarray,
    offsets: np.ndarray,
    bounds: np.ndarray,
    excess: np.ndarray,
    per_series: bool,
) -> tuple[LaidSeries, np.ndarray]:
    """`_clean_with_counts` of series laid end to end: `hours` (int64 epoch hours) and
    `values` split by `offsets`, `bounds` (3 rows: low, high, tolerance) one column per
    series (`per_series`) or per reading, `excess` per series."""
    from aq_assets.ml.kernels import clean_series as compiled

    n_series = offsets.size - 1
    # Each series in order of hour; readings within an hour keep their order.
    steps = np.diff(hours)
    steps[offsets[1:-1][(offsets[1:-1] > 0) & (offsets[1:-1] < hours.size)] - 1] = 0
    if (steps < 0).any():
        series = np.repeat(np.arange(n_series), np.diff(offsets))
        order = np.lexsort((hours, series))
        values, hours = values[order], hours[order]
        if not per_series:  # ranges per series stay with their series
            bounds = bounds[:, order]
    low, high, tolerance = bounds
    hourly_hours, hourly, cuts, counts = compiled(
        values, hours, low, high, tolerance, per_series, offsets, excess
    )
    return (hourly_hours, hourly, cuts), counts


def location_mean(series: Sequence[HourlySeries]) -> HourlySeries:
    """The mean per hour over several sensors of one parameter at one location: what a
    target sensor's co-located parameter is read from. Pass the sensors in ascending sensor
    id: the mean sums them in that order."""
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


def location_means(
    sensors: Iterable[tuple[int, str, HourlySeries]],
) -> dict[int, dict[str, HourlySeries]]:
    """Each location's series per parameter (`location_mean` of its sensors), from the
    (location, parameter, series) of sensors given in ascending sensor id."""
    members: dict[tuple[int, str], list[HourlySeries]] = {}
    for location, parameter, one in sensors:
        members.setdefault((int(location), str(parameter)), []).append(one)
    out: dict[int, dict[str, HourlySeries]] = {}
    for (location, parameter), several in members.items():
        out.setdefault(location, {})[parameter] = location_mean(several)
    return out


def clean_by_sensor(
    sensor_ids: np.ndarray,
    parameters: np.ndarray,
    units: np.ndarray,
    seconds: np.ndarray,
    values: np.ndarray,
) -> tuple[list[int], list[HourlySeries], np.ndarray]:
    """Raw readings as columns, cleaned sensor by sensor (one sensor is one parameter, its
    first row's): for each sensor, in ascending id, the row of its first reading, its cleaned
    series, and how many readings each rule touched (`kernels.COUNTS` columns)."""
    order = np.argsort(sensor_ids, kind="stable")
    ids = sensor_ids[order]
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(ids)) + 1, [ids.size]])
    groups = [order[a:b] for a, b in itertools.pairwise(cuts.tolist()) if a != b]
    cleaned, counts = _clean_with_counts(
        [
            RawSeries(seconds[rows], values[rows], str(parameters[rows[0]]), units[rows])
            for rows in groups
        ]
    )
    return [int(rows[0]) for rows in groups], cleaned, counts


def clean_readings(readings: pd.DataFrame) -> tuple[pd.DataFrame, CleaningReport]:
    """Raw readings (columns sensor_id, location_id, parameter, units, datetime_utc, value;
    one sensor is one parameter at one location) -> one value per (sensor, hour), columns
    sensor_id, location_id, parameter, datetime_utc, value, sorted by sensor and hour:
    `clean_by_sensor`."""
    report = CleaningReport(rows_in=len(readings))
    sensor_ids = readings["sensor_id"].to_numpy(dtype=np.int64)
    parameters = readings["parameter"].astype(str).to_numpy()
    location_ids = readings["location_id"].to_numpy(dtype=np.int64)
    firsts, cleaned, counts = clean_by_sensor(
        sensor_ids,
        parameters,
        readings["units"].astype(str).to_numpy(),
        epoch_seconds(readings["datetime_utc"]),
        readings["value"].to_numpy(dtype=np.float64, na_value=np.nan),
    )
    from aq_assets.ml.kernels import COUNTS

    for name, total in zip(COUNTS, counts.sum(axis=0).tolist(), strict=True):
        setattr(report, name, int(total))
    sizes = [len(series) for series in cleaned]
    hourly = pd.DataFrame(
        {
            "sensor_id": np.repeat([int(sensor_ids[i]) for i in firsts], sizes).astype(np.int64),
            "location_id": np.repeat([int(location_ids[i]) for i in firsts], sizes).astype(
                np.int64
            ),
            "parameter": np.repeat([str(parameters[i]) for i in firsts], sizes).astype(object),
            "datetime_utc": hours_to_datetimes(
                np.concatenate([s.hours for s in cleaned]) if cleaned else np.empty(0, np.int64)
            ),
            "value": np.concatenate([s.values for s in cleaned]) if cleaned else np.empty(0),
        }
    )
    report.hours_out = len(hourly)
    return hourly, report


def epoch_seconds(times: pd.Series) -> np.ndarray:
    """Naive UTC datetimes (any resolution) as int64 seconds since 1970-01-01."""
    return times.to_numpy().astype("datetime64[s]").astype(np.int64)


def epoch_hours(times: pd.Series) -> np.ndarray:
    """Naive UTC datetimes on the hour as int64 hours since 1970-01-01."""
    return epoch_seconds(times) // SECONDS_PER_HOUR


def hours_to_datetimes(hours: np.ndarray) -> np.ndarray:
    """int64 epoch hours as datetime64[ns] (naive UTC)."""
    return (
        (np.asarray(hours, dtype=np.int64) * SECONDS_PER_HOUR)
        .astype("datetime64[s]")
        .astype("datetime64[ns]")
    )


def _rules(parameter: str, units: str | np.ndarray, n: int) -> np.ndarray:
    """`_range_of` for `n` readings of one parameter, in one units or one each (5 × n)."""
    if isinstance(units, str) or np.ndim(units) == 0:
        return np.repeat(np.array(_range_of(parameter, str(units)))[:, None], n, axis=1)
    names, inverse = np.unique(np.asarray(units, dtype=str), return_inverse=True)
    table = np.array([_range_of(parameter, str(u)) for u in names], dtype=np.float64)
    return table[inverse.reshape(-1)].T if n else np.empty((5, 0))


@lru_cache(maxsize=1024)  # a request's few pairs, looked up anew for every request
def _range_of(parameter: str, units: str) -> tuple[float, float, float, float, float]:
    """How a reading of `parameter` in `units` is cleaned: the plausible range in the
    parameter's DEFAULT_UNITS (low, high, tolerance; NaN where the pair is unknown) and the
    conversion into them (scale, shift; 1, 0 for its own units or unknown ones)."""
    pair = (parameter, canonical_units(units))
    scale, shift = UNIT_CONVERSIONS.get(pair, (1.0, 0.0))
    if pair in UNIT_CONVERSIONS:
        pair = (parameter, DEFAULT_UNITS[parameter])
    known = PLAUSIBLE_RANGES.get(pair)
    if known is None:
        return np.nan, np.nan, np.nan, scale, shift
    return float(known.low), float(known.high), float(known.negative_tolerance), scale, shift


def _plausible_in(parameter: str, units: str) -> tuple[float, float, float]:
    """The plausible range of `parameter` in `units` (converted back from its own units)."""
    low, high, tolerance, scale, shift = _range_of(parameter, units)
    return (low - shift) / scale, (high - shift) / scale, tolerance / scale


# A sensor repeating one non-zero value for this many consecutive hours is stuck: on the real
# sets such runs are rare (1 of 238 sensor-days in Toronto, 4 of 5,827 in Poland) and a
# stuck series teaches a forecaster that nothing moves. Runs at zero are a floor (clean air).
STUCK_HOURS = 12


def stuck_hours(hourly: pd.DataFrame, min_hours: int = STUCK_HOURS) -> pd.Series:
    """True for the hours of `clean_readings`' output that belong to a run of at least
    `min_hours` consecutive hours with the same non-zero value of one sensor."""
    frame = hourly.sort_values(["sensor_id", "datetime_utc"])
    same_sensor = frame["sensor_id"].eq(frame["sensor_id"].shift())
    next_hour = frame["datetime_utc"].diff().eq(pd.Timedelta(hours=1))
    repeats = frame["value"].eq(frame["value"].shift()) & (frame["value"] != 0)
    run = (~(same_sensor & next_hour & repeats)).cumsum()
    length = run.map(run.value_counts())
    return (length >= min_hours).reindex(hourly.index)


def without_stuck(hourly: pd.DataFrame, parameter: str) -> tuple[pd.DataFrame, int]:
    """`hourly` less the stuck hours of `parameter`'s sensors (quarantined: not learnt from,
    not scored, not judged for drift), and how many were left out. Other parameters keep
    theirs: a co-located CO sensor at 0.1 ppm resolution repeats itself honestly."""
    stuck = stuck_hours(hourly) & hourly["parameter"].eq(parameter)
    return hourly[~stuck].reset_index(drop=True), int(stuck.sum())
