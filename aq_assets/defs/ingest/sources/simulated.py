"""Simulated readings: the offline default source, deterministic and realistic enough to
forecast from and to test drift detection on.

Every value is a pure function of (seed, sensor, hour). Each location has smooth
weather-like latent processes built from random knots (one knot per 6 hours, per day and
per 6 days) seeded by their absolute index and joined by cubic B-splines, so a day needs
only the knots around it, any day can be computed alone in any order, and the series runs
on across midnight. On top come diurnal and weekly cycles in local time, a mild seasonal
term, multiplicative and instrument noise, missing hours, outages, rare spikes, and small
negatives near zero as reference monitors report them. `drift` injects a change from a
given day on, to exercise drift detection.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, cast, get_args

import numpy as np
import pandas as pd
from dagster import InitResourceContext
from pydantic import Field

from aq_assets.defs.ingest.sources.base import (
    CATALOG_COLUMNS,
    DayReadings,
    ReadingsSource,
    Sensor,
    empty_readings,
    typed_frame,
    utc_day_bounds,
)

__all__ = [
    "DEFAULT_LOCATIONS",
    "DRIFT_ENV_VAR",
    "DRIFT_KINDS",
    "Drift",
    "DriftKind",
    "SimulatedLocation",
    "SimulatedSource",
    "parse_drift",
    "parse_locations",
    "simulated_day_values",
    "simulated_location",
]

DRIFT_ENV_VAR = "AQ_SIM_DRIFT"
TARGET_ONLY_ENV_VAR = "AQ_SIM_TARGET_ONLY"
DriftKind = Literal["level_shift", "variance", "broken_sensor"]
DRIFT_KINDS: tuple[str, ...] = get_args(DriftKind)
_DEFAULT_MAGNITUDE: dict[str, float] = {"level_shift": 1.0, "variance": 3.0}
_DRIFT_FORMAT = (
    "KIND@YYYY-MM-DD or KIND@YYYY-MM-DD:MAGNITUDE with KIND one of "
    f"{', '.join(DRIFT_KINDS)} (e.g. level_shift@2025-06-01, variance@2025-06-01:3, "
    "broken_sensor@2025-06-01), or empty for no drift"
)
_DRIFT_PATTERN = re.compile(
    r"^(?P<kind>[a-z_]+)@(?P<date>\d{4}-\d{2}-\d{2})(?::(?P<magnitude>[^:]+))?$"
)

_HOURS = np.arange(24, dtype=np.int64)
_FIRST_SEEN = pd.Timestamp("2020-01-01")
# Ordinal of 2000-01-15: winter (northern) seasonal peak, and the phase origin of the year.
_WINTER_PEAK_ORDINAL = dt.date(2000, 1, 15).toordinal()
_DAYS_PER_YEAR = 365.2425
_KNOTS_PER_BLOCK = 64
# Variance of a uniform cubic B-spline of unit-variance knots is 0.46-0.5; divide it out.
_BSPLINE_STD = math.sqrt(0.48)

# Random streams: the third entropy word, so every purpose draws independent numbers.
_STREAM_WEATHER_FAST = 1
_STREAM_WEATHER_DAILY = 2
_STREAM_WEATHER_SLOW = 3
_STREAM_OWN = 4
_STREAM_HOURLY = 5
_STREAM_OUTAGE = 6
_STREAM_BROKEN = 7
_STREAM_PROFILE = 8

_MISSING_HOUR_PROBABILITY = 0.03
_OUTAGE_PROBABILITY = 0.025  # per sensor-day; an outage lasts 2-24 h and may run into the next day
_SPIKE_PROBABILITY = 0.003
_BROKEN_ZERO_PROBABILITY = 0.06
_BROKEN_SPIKE_PROBABILITY = 0.01


@dataclass(frozen=True)
class Drift:
    """A change injected into the target parameter of every location from `start` on.

    `level_shift` multiplies the level by (1 + magnitude); `variance` multiplies the noise
    spread by magnitude (the mean stays); `broken_sensor` makes every target sensor report
    a stuck value with occasional zeros and spikes (magnitude unused).
    """

    kind: DriftKind
    start: dt.date
    magnitude: float = 0.0

    def applies_to(self, day: dt.date) -> bool:
        return day >= self.start


def _drift_error(spec: str, reason: str) -> ValueError:
    return ValueError(
        f"Invalid simulated drift (resource field `drift`, env var {DRIFT_ENV_VAR}) "
        f"{spec!r}: {reason}. Expected {_DRIFT_FORMAT}."
    )


@lru_cache(maxsize=64)
def parse_drift(spec: str) -> Drift | None:
    """The drift a `KIND@YYYY-MM-DD[:MAGNITUDE]` spec asks for; None when the spec is empty.

    Raises ValueError naming `AQ_SIM_DRIFT`, the bad value and the expected format.
    """
    text = spec.strip()
    if not text:
        return None
    match = _DRIFT_PATTERN.match(text)
    if match is None:
        raise _drift_error(spec, "not in the expected form")
    kind = cast(DriftKind, match["kind"])
    if kind not in DRIFT_KINDS:
        raise _drift_error(spec, f"unknown kind {kind!r}")
    try:
        start = dt.date.fromisoformat(match["date"])
    except ValueError:
        raise _drift_error(spec, f"{match['date']!r} is not a date YYYY-MM-DD") from None
    magnitude_text = match["magnitude"]
    if magnitude_text is None:
        return Drift(kind=kind, start=start, magnitude=_DEFAULT_MAGNITUDE.get(kind, 0.0))
    if kind == "broken_sensor":
        raise _drift_error(spec, "broken_sensor takes no magnitude")
    try:
        magnitude = float(magnitude_text)
    except ValueError:
        raise _drift_error(spec, f"magnitude {magnitude_text!r} is not a number") from None
    if not math.isfinite(magnitude):
        raise _drift_error(spec, "magnitude must be finite")
    if kind == "level_shift" and magnitude <= -1:
        raise _drift_error(spec, "level_shift magnitude must be > -1 (factor 1 + magnitude)")
    if kind == "variance" and magnitude <= 0:
        raise _drift_error(spec, "variance magnitude must be > 0 (it scales the noise)")
    return Drift(kind=kind, start=start, magnitude=magnitude)


@dataclass(frozen=True)
class SimulatedLocation:
    """A simulated monitoring site. `pollution_scale` multiplies its typical levels."""

    location_id: int
    name: str
    latitude: float
    longitude: float
    utc_offset_minutes: int
    pollution_scale: float

    @property
    def timezone(self) -> str:
        """The fixed UTC offset as "+HH:MM" / "-HH:MM"."""
        sign = "-" if self.utc_offset_minutes < 0 else "+"
        hours, minutes = divmod(abs(self.utc_offset_minutes), 60)
        return f"{sign}{hours:02d}:{minutes:02d}"


DEFAULT_LOCATIONS: tuple[SimulatedLocation, ...] = (
    SimulatedLocation(9001, "Simulated Riverside", 41.88, -87.63, -360, 1.0),
    SimulatedLocation(9002, "Simulated Harbour", 40.70, -74.01, -300, 1.15),
    SimulatedLocation(9003, "Simulated Old Town", 51.51, -0.12, 0, 0.8),
    SimulatedLocation(9004, "Simulated Hillside", 48.86, 2.35, 60, 0.95),
    SimulatedLocation(9005, "Simulated Market", 28.61, 77.21, 330, 2.0),
)
_DEFAULT_BY_ID = {location.location_id: location for location in DEFAULT_LOCATIONS}
_PLACE_WORDS = (
    "Riverside", "Harbour", "Old Town", "Hillside", "Market", "Station", "Parkview",
    "Canal Street", "University", "Airport", "Docklands", "Greenway", "Ring Road",
    "Cathedral", "Industrial Park", "Lakeshore",
)  # fmt: skip
_UTC_OFFSETS_MINUTES = (-480, -420, -360, -300, -180, 0, 60, 120, 180, 330, 480, 540, 600)


@lru_cache(maxsize=1024)
def simulated_location(location_id: int) -> SimulatedLocation:
    """The site behind `location_id`: a default one, or one invented from the id alone."""
    if location_id in _DEFAULT_BY_ID:
        return _DEFAULT_BY_ID[location_id]
    rng = np.random.default_rng([_STREAM_PROFILE, location_id])
    offset = int(rng.choice(_UTC_OFFSETS_MINUTES))
    # Longitude roughly follows the offset, as real time zones do.
    longitude = float(np.clip(offset / 4 + rng.uniform(-7, 7), -179.9, 179.9))
    return SimulatedLocation(
        location_id=location_id,
        name=f"Simulated {rng.choice(_PLACE_WORDS)} {location_id}",
        latitude=round(float(rng.uniform(-40, 60)), 4),
        longitude=round(longitude, 4),
        utc_offset_minutes=offset,
        pollution_scale=round(float(np.clip(np.exp(rng.normal(0, 0.3)), 0.6, 2.5)), 3),
    )


@lru_cache(maxsize=16)
def _simulated_ids(spec: str) -> frozenset[int]:
    return frozenset(parse_locations(spec))


def parse_locations(spec: str) -> tuple[int, ...]:
    """Location ids from a comma-separated list, in order without repeats; the 5 default
    ids when empty."""
    if not spec.strip():
        return tuple(location.location_id for location in DEFAULT_LOCATIONS)
    ids: list[int] = []
    for part in spec.split(","):
        text = part.strip()
        if not text.isdigit() or int(text) <= 0:
            raise ValueError(
                f"AQ_LOCATIONS={spec!r} (the simulated source's `locations`): "
                f"{text!r} is not a positive integer id. Expected e.g. '101,202', "
                "or empty for the 5 default locations."
            )
        if int(text) not in ids:
            ids.append(int(text))
    return tuple(ids)


@dataclass(frozen=True)
class _Bump:
    """A peak (or dip, when negative) in local time, added in log space."""

    hour: float
    width_hours: float
    amplitude: float


@dataclass(frozen=True)
class _ParameterProfile:
    """How one parameter behaves; loadings and amplitudes are in log space."""

    openaq_id: int
    units: str
    base_level: float  # typical level at pollution_scale 1
    scales_with_location: bool
    fast_loading: float
    daily_loading: float
    slow_loading: float
    own_loading: float  # the sensor's own slow process (dust for pm10, photochemistry for o3)
    winter_amplitude: float  # > 0: higher in winter, < 0: higher in summer
    noise_sigma: float
    instrument_noise: float  # additive, in units: gives small negatives when the level is low
    decimals: int
    diurnal: tuple[_Bump, ...]
    weekday_log_levels: tuple[float, ...]  # Monday..Sunday


_PM_DIURNAL = (_Bump(8, 2, 0.30), _Bump(21, 3, 0.40), _Bump(15, 3, -0.25))
_PM_WEEK = (0.0, 0.0, 0.0, 0.0, 0.02, -0.12, -0.18)
_PROFILES: dict[str, _ParameterProfile] = {
    "pm10": _ParameterProfile(
        openaq_id=1,
        units="µg/m³",
        base_level=21.0,
        scales_with_location=True,
        fast_loading=0.12,
        daily_loading=0.45,
        slow_loading=0.35,
        own_loading=0.25,
        winter_amplitude=0.15,
        noise_sigma=0.22,
        instrument_noise=2.5,
        decimals=1,
        diurnal=_PM_DIURNAL,
        weekday_log_levels=_PM_WEEK,
    ),
    "pm25": _ParameterProfile(
        openaq_id=2,
        units="µg/m³",
        base_level=12.0,
        scales_with_location=True,
        fast_loading=0.12,
        daily_loading=0.45,
        slow_loading=0.35,
        own_loading=0.08,
        winter_amplitude=0.20,
        noise_sigma=0.18,
        instrument_noise=1.5,
        decimals=1,
        diurnal=_PM_DIURNAL,
        weekday_log_levels=_PM_WEEK,
    ),
    "no2": _ParameterProfile(
        openaq_id=7,
        units="ppm",
        base_level=0.016,
        scales_with_location=True,
        fast_loading=0.25,
        daily_loading=0.40,
        slow_loading=0.25,
        own_loading=0.12,
        winter_amplitude=0.15,
        noise_sigma=0.20,
        instrument_noise=0.0015,
        decimals=4,
        diurnal=(
            _Bump(8, 1.8, 0.55),
            _Bump(18.5, 2.2, 0.45),
            _Bump(3.5, 2.5, -0.35),
            _Bump(14, 3, -0.20),
        ),
        weekday_log_levels=(0.03, 0.03, 0.03, 0.03, 0.05, -0.25, -0.35),
    ),
    # Ozone is titrated by NO: it loads negatively on the stagnation processes that raise no2.
    "o3": _ParameterProfile(
        openaq_id=10,
        units="ppm",
        base_level=0.028,
        scales_with_location=False,
        fast_loading=-0.20,
        daily_loading=-0.30,
        slow_loading=-0.10,
        own_loading=0.20,
        winter_amplitude=-0.25,
        noise_sigma=0.20,
        instrument_noise=0.002,
        decimals=4,
        diurnal=(_Bump(15, 3.5, 0.90), _Bump(7.5, 2, -0.50)),
        weekday_log_levels=(0.0, 0.0, 0.0, 0.0, 0.0, 0.06, 0.08),
    ),
}
_GENERIC_GASES_PPM = {"co": 0.3, "so2": 0.002, "no": 0.006, "nox": 0.025}
_UNKNOWN_PARAMETER_ID = 99


@lru_cache(maxsize=64)
def _profile(parameter: str) -> _ParameterProfile:
    """The behaviour of `parameter`; a generic weather-driven one when it is not simulated."""
    if parameter in _PROFILES:
        return _PROFILES[parameter]
    is_gas = parameter in _GENERIC_GASES_PPM
    return _ParameterProfile(
        openaq_id=_UNKNOWN_PARAMETER_ID,
        units="ppm" if is_gas else "µg/m³",
        base_level=_GENERIC_GASES_PPM.get(parameter, 10.0),
        scales_with_location=True,
        fast_loading=0.10,
        daily_loading=0.35,
        slow_loading=0.30,
        own_loading=0.15,
        winter_amplitude=0.10,
        noise_sigma=0.20,
        instrument_noise=_GENERIC_GASES_PPM.get(parameter, 10.0) * 0.05,
        decimals=4 if is_gas else 1,
        diurnal=(_Bump(8, 2, 0.20), _Bump(20, 3, 0.20)),
        weekday_log_levels=(0.0, 0.0, 0.0, 0.0, 0.0, -0.05, -0.08),
    )


def _parameter_id(parameter: str) -> int:
    return _profile(parameter).openaq_id


def _sensor_parameters(target: str, target_only: bool = False) -> tuple[str, ...]:
    """The simulated parameters at each location: the four co-located ones, plus the target
    when it is not among them; or the target alone."""
    if target_only:
        return (target,)
    parameters = tuple(_PROFILES)
    return parameters if target in _PROFILES else (*parameters, target)


def _raw_diurnal(bumps: tuple[_Bump, ...], local_hours: np.ndarray) -> np.ndarray:
    total = np.zeros_like(local_hours, dtype=np.float64)
    for bump in bumps:
        angular_width = 2 * np.pi * bump.width_hours / 24
        phase = np.cos(2 * np.pi * (local_hours - bump.hour) / 24) - 1
        total += bump.amplitude * np.exp(phase / angular_width**2)
    return total


@lru_cache(maxsize=64)
def _diurnal_mean(bumps: tuple[_Bump, ...]) -> float:
    return float(_raw_diurnal(bumps, np.linspace(0, 24, 24 * 12, endpoint=False)).mean())


def _diurnal_log(bumps: tuple[_Bump, ...], local_hours: np.ndarray) -> np.ndarray:
    """Log-level diurnal cycle at fractional local hours, centred on zero over a day."""
    return _raw_diurnal(bumps, local_hours) - _diurnal_mean(bumps)


def _weekly_log(weekday_levels: tuple[float, ...], local_days: np.ndarray) -> np.ndarray:
    """Log-level weekly cycle at fractional local day ordinals, linear between local noons
    so it has no step at midnight."""
    position = local_days - 0.5
    day = np.floor(position).astype(np.int64)
    fraction = position - day
    levels = np.asarray(weekday_levels)
    # date.fromordinal(1) is a Monday, so (ordinal - 1) % 7 is the weekday.
    return (1 - fraction) * levels[(day - 1) % 7] + fraction * levels[day % 7]


@lru_cache(maxsize=16384)
def _knot_block(seed: int, entity: int, stream: int, block: int) -> np.ndarray:
    knots = np.random.default_rng([seed, entity, stream, block]).standard_normal(_KNOTS_PER_BLOCK)
    knots.setflags(write=False)
    return knots


def _knots(seed: int, entity: int, stream: int, first: int, count: int) -> np.ndarray:
    """Knot values first..first+count-1 of one process; each drawn from its block's seed."""
    first_block, last_block = first // _KNOTS_PER_BLOCK, (first + count - 1) // _KNOTS_PER_BLOCK
    blocks = [_knot_block(seed, entity, stream, b) for b in range(first_block, last_block + 1)]
    start = first - first_block * _KNOTS_PER_BLOCK
    return np.concatenate(blocks)[start : start + count]


def _smooth_process(
    seed: int, entity: int, stream: int, spacing_hours: int, hours: np.ndarray
) -> np.ndarray:
    """A unit-variance smooth random process at absolute `hours`: a uniform cubic B-spline
    through knots every `spacing_hours`."""
    position = hours / spacing_hours
    index = np.floor(position).astype(np.int64)
    fraction = position - index
    first = int(index[0]) - 1
    knots = _knots(seed, entity, stream, first, int(index[-1]) + 3 - first)
    at = index - first
    f2, f3 = fraction**2, fraction**3
    weights = (
        (1 - fraction) ** 3 / 6,
        (3 * f3 - 6 * f2 + 4) / 6,
        (-3 * f3 + 3 * f2 + 3 * fraction + 1) / 6,
        f3 / 6,
    )
    value = sum(w * knots[at + k - 1] for k, w in enumerate(weights))
    return value / _BSPLINE_STD


def _day_hours(day: dt.date) -> np.ndarray:
    """Absolute hours (hours since 0001-01-01 00:00 UTC) of the 24 hours of a UTC day."""
    return day.toordinal() * 24 + _HOURS


@lru_cache(maxsize=8192)
def _location_weather(seed: int, location_id: int, ordinal: int) -> np.ndarray:
    """The location's three shared weather processes (6-hourly, daily, 6-daily knots) over
    one UTC day, shape (3, 24); shared by its co-located sensors."""
    hours = ordinal * 24 + _HOURS
    weather = np.stack(
        [
            _smooth_process(seed, location_id, _STREAM_WEATHER_FAST, 6, hours),
            _smooth_process(seed, location_id, _STREAM_WEATHER_DAILY, 24, hours),
            _smooth_process(seed, location_id, _STREAM_WEATHER_SLOW, 144, hours),
        ]
    )
    weather.setflags(write=False)
    return weather


def _outage_hours(seed: int, sensor_id: int, ordinal: int) -> tuple[int, int]:
    """[start, end) hours of the day's outage, counted from that day's midnight (end may
    pass 24); (0, 0) when there is none."""
    rng = np.random.default_rng([seed, sensor_id, _STREAM_OUTAGE, ordinal])
    happens, start, length = rng.random(), int(rng.integers(0, 24)), int(rng.integers(2, 25))
    return (start, start + length) if happens < _OUTAGE_PROBABILITY else (0, 0)


def _missing_mask(seed: int, sensor_id: int, ordinal: int, uniform: np.ndarray) -> np.ndarray:
    hour = _HOURS
    missing = uniform < _MISSING_HOUR_PROBABILITY
    start, end = _outage_hours(seed, sensor_id, ordinal)
    missing |= (hour >= start) & (hour < end)
    # Yesterday's outage may run past midnight into today.
    _, yesterday_end = _outage_hours(seed, sensor_id, ordinal - 1)
    missing |= hour < yesterday_end - 24
    return missing


def simulated_day_values(
    *,
    seed: int,
    location: SimulatedLocation,
    parameter: str,
    sensor_id: int,
    day: dt.date,
    drift: Drift | None = None,
) -> np.ndarray:
    """The 24 hourly values (UTC hours 0..23) of one sensor on one UTC day, NaN where the
    hour is missing. Pure: depends on its arguments only. `drift` is applied as given, so
    pass it for the target parameter's sensors only.
    """
    profile = _profile(parameter)
    ordinal = day.toordinal()
    hours = _day_hours(day)
    local_hours = hours + location.utc_offset_minutes / 60
    fast, daily, slow = _location_weather(seed, location.location_id, ordinal)
    own = _smooth_process(seed, sensor_id, _STREAM_OWN, 72, hours)
    season_phase = 2 * np.pi * (hours / 24 - _WINTER_PEAK_ORDINAL) / _DAYS_PER_YEAR
    hemisphere = 1.0 if location.latitude >= 0 else -1.0
    log_level = (
        profile.fast_loading * fast
        + profile.daily_loading * daily
        + profile.slow_loading * slow
        + profile.own_loading * own
        + hemisphere * profile.winter_amplitude * np.cos(season_phase)
        + _diurnal_log(profile.diurnal, np.mod(local_hours, 24))
        + _weekly_log(profile.weekday_log_levels, local_hours / 24)
    )
    scale = location.pollution_scale if profile.scales_with_location else 1.0
    level = profile.base_level * scale * np.exp(log_level)

    # Draw every random number in a fixed order whatever the drift, so drift changes only
    # what it is meant to change.
    rng = np.random.default_rng([seed, sensor_id, _STREAM_HOURLY, ordinal])
    noise = rng.standard_normal(24)
    instrument = rng.standard_normal(24)
    missing_uniform = rng.random(24)
    spike_uniform = rng.random(24)
    spike_factor = rng.uniform(2.5, 6, 24)
    broken_uniform = rng.random(24)
    broken_spike_factor = rng.uniform(4, 12, 24)

    active = drift if drift is not None and drift.applies_to(day) else None
    noise_sigma, instrument_sigma = profile.noise_sigma, profile.instrument_noise
    if active is not None and active.kind == "level_shift":
        level = level * (1 + active.magnitude)
    if active is not None and active.kind == "variance":
        noise_sigma *= active.magnitude
        instrument_sigma *= active.magnitude
    # Mean-one lognormal noise: the variance drift widens the spread, not the mean.
    values = level * np.exp(noise_sigma * noise - noise_sigma**2 / 2)
    values = values + instrument_sigma * instrument
    values = np.where(spike_uniform < _SPIKE_PROBABILITY, np.abs(values) * spike_factor, values)

    if active is not None and active.kind == "broken_sensor":
        stuck_rng = np.random.default_rng([seed, sensor_id, _STREAM_BROKEN])
        stuck = round(profile.base_level * scale * stuck_rng.uniform(0.5, 1.2), profile.decimals)
        values = np.full(24, stuck)
        values[broken_uniform < _BROKEN_ZERO_PROBABILITY] = 0.0
        is_spike = broken_uniform > 1 - _BROKEN_SPIKE_PROBABILITY
        values[is_spike] = stuck * broken_spike_factor[is_spike]

    values = np.round(values, profile.decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    values[_missing_mask(seed, sensor_id, ordinal, missing_uniform)] = np.nan
    return values


class SimulatedSource(ReadingsSource):
    """Deterministic simulated readings: the offline default source (`AQ_SOURCE=simulated`).

    Each location has pm25, pm10, no2 and o3 sensors (plus the target `parameter` when it
    is none of those), with weather-like persistence shared by co-located sensors, diurnal
    and weekly cycles in local time, noise, gaps, spikes and small negatives. The same
    (seed, sensor, day) always gives the same readings.
    """

    locations: str = Field(
        default="",
        description="Comma-separated location ids; empty for the 5 default sites 9001-9005.",
    )
    drift: str = Field(
        default="",
        description=f"Drift injected into `parameter` from a day on (env {DRIFT_ENV_VAR}): "
        + _DRIFT_FORMAT,
    )
    seed: int = Field(default=0, ge=0, description="Seed of every random number drawn.")
    target_only: bool = Field(
        default=False,
        description="Offer only the target parameter's sensor at each location (env "
        f"{TARGET_ONLY_ENV_VAR}), not its co-located ones: a quarter of the ingest, for "
        "benchmarks at many sensors. The target's readings are the same either way.",
    )

    @property
    def name(self) -> str:
        return "simulated"

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # Fail at run start, not deep inside the first partition, on a bad spec.
        parse_drift(self.drift)
        parse_locations(self.locations)

    def list_sensors(self) -> pd.DataFrame:
        rows = [
            {
                "sensor_id": location.location_id * 1000 + _parameter_id(parameter),
                "location_id": location.location_id,
                "location_name": location.name,
                "parameter": parameter,
                "units": _profile(parameter).units,
                "latitude": location.latitude,
                "longitude": location.longitude,
                "timezone": location.timezone,
                "first_seen_utc": _FIRST_SEEN,
                "last_seen_utc": pd.NaT,
                "source": self.name,
            }
            for location in map(simulated_location, parse_locations(self.locations))
            for parameter in _sensor_parameters(self.parameter, self.target_only)
        ]
        catalog = typed_frame(rows, CATALOG_COLUMNS)
        return catalog.sort_values("sensor_id", ignore_index=True)

    def fetch_day(self, sensor: Sensor, day: dt.date) -> DayReadings:
        if isinstance(day, dt.datetime):
            day = day.date()
        if sensor.location_id not in _simulated_ids(self.locations):
            # A sensor of another source (an archive's, discovered into the same catalog):
            # nothing measured here, rather than values invented for its id.
            return DayReadings(empty_readings())
        drift = parse_drift(self.drift) if sensor.parameter == self.parameter else None
        values = simulated_day_values(
            seed=self.seed,
            location=simulated_location(sensor.location_id),
            parameter=sensor.parameter,
            sensor_id=sensor.sensor_id,
            day=day,
            drift=drift,
        )
        present = ~np.isnan(values)
        count = int(present.sum())
        start, _ = utc_day_bounds(day)
        timestamps = start.to_datetime64() + _HOURS[present].astype("timedelta64[h]")
        readings = pd.DataFrame(
            {
                "sensor_id": np.full(count, sensor.sensor_id, dtype=np.int64),
                "location_id": np.full(count, sensor.location_id, dtype=np.int64),
                "parameter": pd.array([sensor.parameter] * count, dtype="string"),
                "units": pd.array([_profile(sensor.parameter).units] * count, dtype="string"),
                "datetime_utc": timestamps.astype("datetime64[ns]"),
                "value": values[present],
                "source": pd.array([self.name] * count, dtype="string"),
            }
        )
        return DayReadings(readings=readings)
