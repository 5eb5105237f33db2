"""Requests to forecasts: validate what depends on settings and on the loaded model, clean
and featurize each history with `aq_assets.ml.online` (the batch path's rules, in numpy),
predict every series of a request in one booster call, and encode the answer."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgspec
import numpy as np

from aq_assets.ml.cleaning import PLAUSIBLE_RANGES
from aq_assets.ml.online import (
    HourlySeries,
    Origin,
    RawSeries,
    check_timezone,
    clean_many,
    location_mean,
    origin_feature_rows,
)
from serving.champion import LoadedModel
from serving.schemas import READ_FORECAST_REQUEST, ForecastRequest, Readings
from serving.settings import Settings
from serving.snapshot import OnlineSnapshot

SECONDS_PER_HOUR = 3600
# Readings and origins outside these years are refused: nothing was measured before, and
# hour arithmetic stays far from every calendar limit.
FIRST_SECOND = 0  # 1970-01-01
LAST_SECOND = 4102444800  # 2100-01-01
_EPOCH = dt.datetime(1970, 1, 1)
# numpy converts "+02:00" and "Z" to UTC as it parses, and says it keeps no time zone.
warnings.filterwarnings(
    "ignore",
    message="no explicit representation of timezones",
    category=UserWarning,
    module=__name__,
)
# The units a parameter's values are in when a request does not say: its first known range.
DEFAULT_UNITS: dict[str, str] = dict(reversed(list(PLAUSIBLE_RANGES)))


class ApiError(Exception):
    """A request the service cannot answer: the status, and the field to blame (JSON path)."""

    def __init__(self, status: int, field: str, msg: str, kind: str) -> None:
        super().__init__(msg)
        self.status = status
        self.field = field
        self.msg = msg
        self.kind = kind


@dataclass(frozen=True)
class History:
    """One series, cleaned, ready for `origin_feature_rows`."""

    sensor_id: int | None
    target: HourlySeries
    covariates: dict[str, HourlySeries]
    timezone: str | None
    origin: int | None  # epoch hours; None: the latest valid reading's hour


def read_request(body: bytes) -> ForecastRequest:
    """The body as a ForecastRequest, or a 422 naming the first thing wrong (JSON path)."""
    try:
        return READ_FORECAST_REQUEST.decode(body)
    except msgspec.ValidationError as exc:
        error = _invalid_body(str(exc))
        error.field = _with_covariate_names(error.field, body)
        raise error from None
    except msgspec.DecodeError as exc:
        raise ApiError(422, "body", _invalid_json(str(exc), body), "json_invalid") from None


def _invalid_body(message: str) -> ApiError:
    """msgspec's "Expected `int` >= 0 - at `$.series[0].sensor_id`" as an ApiError."""
    message, _, where = message.partition(" - at ")
    at = where.rpartition("`$")[2].rstrip("`").lstrip(".")
    field = re.search(r"field `([^`]*)`", message)
    kind = "value_error"
    if message.startswith(("Object missing required field", "Object contains unknown field")):
        kind = "missing" if "missing" in message else "extra_forbidden"
        at = f"{at}.{field.group(1)}" if at and field else (field.group(1) if field else at)
    elif message.startswith("Expected `") and ", got `" in message:
        kind = "type_error"
    return ApiError(422, at or "body", message, kind)


def _with_covariate_names(field: str, body: bytes) -> str:
    """msgspec says `covariates[...]` for a value of the dict: name the one that fails."""
    if "[...]" not in field:
        return field
    node: Any = msgspec.json.decode(body)
    out: list[str] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+|\.\.\.)\]", field):
        if index == "...":
            if not isinstance(node, dict):
                return field
            name = next((k for k, v in node.items() if not _valid(v, Readings)), None)
            if name is None:
                return field
        if name:
            node = node.get(name) if isinstance(node, dict) else None
            out.append(f".{name}" if out else name)
        else:
            node = node[int(index)] if isinstance(node, list) else None
            out.append(f"[{index}]")
    return "".join(out)


def _valid(value: Any, kind: type) -> bool:
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError:
        return False
    return True


def _invalid_json(message: str, body: bytes) -> str:
    at = re.search(r"\(byte (\d+)\)", message)
    if at and body[int(at.group(1)) :].lstrip(b"-").startswith((b"NaN", b"Infinity")):
        return (
            "Invalid JSON: NaN and Infinity are not JSON numbers, send null for no reading "
            + at.group(0)
        )
    return f"Invalid JSON: {message}"


def histories(request: ForecastRequest, model: LoadedModel, settings: Settings) -> list[History]:
    """The request's series, checked against the limits and the model, then cleaned."""
    spec = model.spec
    if len(request.series) > settings.max_series:
        raise ApiError(
            413,
            "series",
            f"{len(request.series)} series in one request; at most {settings.max_series} "
            "(AQ_API_MAX_SERIES)",
            "too_many_series",
        )
    parts: list[tuple[str, Readings, str]] = []  # (JSON path, readings, their parameter)
    for i, series in enumerate(request.series):
        at = f"series[{i}]"
        if series.parameter is not None and series.parameter != spec.parameter:
            raise ApiError(
                422,
                f"{at}.parameter",
                f"the model forecasts {spec.parameter!r}, not {series.parameter!r}",
                "value_error",
            )
        try:
            check_timezone(series.timezone)
        except ValueError as exc:
            raise ApiError(422, f"{at}.timezone", str(exc), "value_error") from None
        parts.append((at, series, spec.parameter))
        for name, readings in series.covariates.items():
            if name not in spec.covariates:
                raise ApiError(
                    422,
                    f"{at}.covariates.{name}",
                    f"not a co-located parameter the model reads; it reads {list(spec.covariates)}",
                    "value_error",
                )
            parts.append((f"{at}.covariates.{name}", readings, name))
    for at, readings, _ in parts:
        _check_shape(readings, at, settings)
    seconds = _all_seconds([(f"{at}.timestamps", readings.timestamps) for at, readings, _ in parts])
    cleaned = iter(
        clean_many(
            [
                RawSeries(
                    stamps,
                    np.array(readings.values, dtype=np.float64),  # None becomes NaN
                    parameter,
                    readings.units or DEFAULT_UNITS.get(parameter, ""),
                )
                for (_, readings, parameter), stamps in zip(parts, seconds, strict=True)
            ]
        )
    )
    out = []
    for i, series in enumerate(request.series):
        target = next(cleaned)
        covariates = {name: next(cleaned) for name in series.covariates}
        if spec.parameter in covariates:  # the location's mean includes the target sensor
            covariates[spec.parameter] = location_mean([target, covariates[spec.parameter]])
        origin = None
        if series.origin is not None:
            origin_seconds = _seconds([series.origin], f"series[{i}].origin", indexed=False)
            origin = int(origin_seconds[0] // SECONDS_PER_HOUR)
        out.append(History(series.sensor_id, target, covariates, series.timezone, origin))
    return out


def _check_shape(readings: Readings, at: str, settings: Settings) -> None:
    n = len(readings.timestamps)
    if n > settings.max_history_rows:
        raise ApiError(
            413,
            f"{at}.timestamps",
            f"{n} readings; at most {settings.max_history_rows} per series and parameter "
            "(AQ_API_MAX_HISTORY_ROWS)",
            "too_many_rows",
        )
    if len(readings.values) != n:
        raise ApiError(
            422,
            f"{at}.values",
            f"{len(readings.values)} values for {n} timestamps; they go in pairs",
            "value_error",
        )


def _all_seconds(lists: list[tuple[str, list[str | int]]]) -> list[np.ndarray]:
    """`_seconds` of each list; the usual request (every stamp ISO 8601 in UTC) is parsed in
    one pass over all of them, anything else list by list, which names a bad value."""
    flat = list(itertools.chain.from_iterable(stamps for _, stamps in lists))
    parsed = _utc_iso_seconds(flat)
    if parsed is not None:
        seconds = parsed.astype(np.int64)
        if not _outside(seconds).any():
            return np.split(seconds, np.cumsum([len(stamps) for _, stamps in lists])[:-1])
    return [_seconds(stamps, at) for at, stamps in lists]


def _seconds(stamps: list[str | int], at: str, indexed: bool = True) -> np.ndarray:
    """Unix seconds (UTC) of ISO 8601 strings or Unix seconds, parsed by numpy at once."""
    try:
        parsed = _parse(stamps)
    except (ValueError, TypeError, OverflowError):
        parsed = None
    if parsed is None or np.isnat(parsed).any():
        j = _first_unreadable(stamps)
        raise ApiError(
            422,
            f"{at}[{j}]" if indexed else at,
            "not a time: expected ISO 8601 (2025-05-01T13:00:00Z) or Unix seconds",
            "datetime_parsing",
        )
    seconds = parsed.astype(np.int64)
    outside = _outside(seconds)
    if outside.any():
        j = int(np.argmax(outside))
        raise ApiError(
            422,
            f"{at}[{j}]" if indexed else at,
            "must be between 1970-01-01 and 2100-01-01 (UTC)",
            "value_error",
        )
    return seconds


def _outside(seconds: np.ndarray) -> np.ndarray:
    return (seconds < FIRST_SECOND) | (seconds >= LAST_SECOND)


def _parse(stamps: list[str | int]) -> np.ndarray:
    fast = _utc_iso_seconds(stamps)
    if fast is not None:
        return fast
    if all(type(s) is str for s in stamps):
        # A trailing Z is UTC, what numpy assumes anyway; left on, numpy warns per value.
        return np.strings.rstrip(np.array(stamps, dtype=str), "Z").astype("datetime64[s]")
    if all(type(s) is int for s in stamps):
        return np.array(stamps, dtype=np.int64).astype("datetime64[s]")
    return np.array([np.datetime64(s, "s") for s in stamps], dtype="datetime64[s]")


def _iso_bounds(width: int) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest byte allowed at each position of "YYYY-MM-DDTHH:MM:SS", with a
    "Z" when `width` is 20, and a newline."""
    template = "0000-00-00T00:00:00Z"[:width] + "\n"
    low = np.frombuffer(template.encode(), dtype=np.uint8).copy()
    high = low.copy()
    high[[i for i, c in enumerate(template) if c == "0"]] = ord("9")
    return low, high


_ISO_BOUNDS = {width: _iso_bounds(width) for width in (20, 19)}
# The two digits of each pair: (centuries, years, month, day, hour, minute, second).
_TENS = np.array([0, 2, 5, 8, 11, 14, 17])
_ONES = _TENS + 1
# By month number (index 0 unused); months outside 1..12 are refused before the lookup of
# days before the month, and clipped into 0..13 for the check itself.
_DAYS_BEFORE_MONTH = np.array([0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334])
_DAYS_IN_MONTH = np.array([31, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 31])


def _utc_iso_seconds(stamps: list[str | int]) -> np.ndarray | None:
    """datetime64[s] of timestamps that are all "YYYY-MM-DDTHH:MM:SSZ" or all without the Z
    (what clients and our own snapshot send), read from their bytes in a few array
    operations: numpy's general parser costs ~0.25 µs a value, most of a request with a
    month of history. None when any stamp has another form: the general path decides."""
    n = len(stamps)
    try:
        joined = "\n".join(stamps).encode("ascii")  # type: ignore[arg-type]
    except (TypeError, UnicodeEncodeError):  # ints, or not ASCII
        return None
    width = next((w for w in (20, 19) if n and len(joined) == n * (w + 1) - 1), None)
    if width is None:
        return None
    low, high = _ISO_BOUNDS[width]
    rows = np.frombuffer(joined + b"\n", dtype=np.uint8).reshape(n, width + 1)
    # Every byte is what its position allows, so the newlines are exactly those the join
    # put between the stamps: the rows are the stamps.
    if not ((rows >= low) & (rows <= high)).all():
        return None
    pairs = rows[:, _TENS].astype(np.int64) * 10 + rows[:, _ONES] - 11 * ord("0")
    year = pairs[:, 0] * 100 + pairs[:, 1]
    month, day, hour, minute, second = pairs[:, 2:].T
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _DAYS_IN_MONTH[np.clip(month, 0, 13)] - ((month == 2) & ~leap)
    if not (
        ((month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)).all()
        and ((hour < 24) & (minute < 60) & (second < 60)).all()
    ):
        return None  # the general path names the bad value
    # Days since 1970-01-01 of the proleptic Gregorian date.
    before = year - 1
    days = (
        365 * (year - 1970)
        + (before // 4 - before // 100 + before // 400)
        - (1969 // 4 - 1969 // 100 + 1969 // 400)
        + _DAYS_BEFORE_MONTH[month]
        + ((month > 2) & leap)
        + day
        - 1
    )
    seconds = days * 86400 + hour * 3600 + minute * 60 + second
    return seconds.astype("datetime64[s]")


def _first_unreadable(stamps: list[str | int]) -> int:
    for j, stamp in enumerate(stamps):
        try:
            if np.isnat(np.datetime64(stamp, "s")):
                return j
        except (ValueError, TypeError, OverflowError):
            return j
    return 0


def forecast(model: LoadedModel, items: list[History]) -> list[dict[str, Any]]:
    """One result per history, in order: every feature row in one pass, every row through
    the model in one call."""
    spec = model.spec
    origins = [
        int(item.target.hours[-1]) if item.origin is None and len(item.target) else item.origin
        for item in items
    ]
    results: list[dict[str, Any]] = [
        {
            "sensor_id": item.sensor_id,
            "origin_utc": _iso(origin),
            "level": None,
            "forecasts": [],
            "note": None,
        }
        for item, origin in zip(items, origins, strict=True)
    ]
    todo = [(i, origin) for i, origin in enumerate(origins) if origin is not None]
    rows, valid = origin_feature_rows(
        spec,
        [
            Origin(
                items[i].target, items[i].covariates, origin, items[i].sensor_id, items[i].timezone
            )
            for i, origin in todo
        ],
    )
    done = [(i, origin) for (i, origin), ok in zip(todo, valid.tolist(), strict=True) if ok]
    with_row = {i for i, _ in done}
    for i, item in enumerate(items):
        if i not in with_row:
            results[i]["note"] = (
                "no valid reading (all null, sentinel, implausible or spikes)"
                if not len(item.target)
                else "the origin is before the first valid reading"
            )
    if not done:
        return results
    rows = rows[valid]
    predicted = model.forecaster.predict(
        rows, [items[i].sensor_id for i, _ in done], [origin for _, origin in done]
    )
    levels = rows[:, model.forecaster.level_index].tolist()
    horizons = model.forecaster.horizons
    for (i, origin), level, values in zip(done, levels, predicted.tolist(), strict=True):
        result = results[i]
        result["level"] = _number(level)
        result["forecasts"] = [
            {"horizon_hours": h, "forecast_for_utc": _iso(origin + h), "value": _number(v)}
            for h, v in zip(horizons, values, strict=True)
        ]
        if result["level"] is None:
            result["note"] = (
                f"no valid reading within {spec.max_fill_hours} h before the origin: no "
                "current level to forecast from"
            )
    return results


def request_answer(model: LoadedModel, request: ForecastRequest, settings: Settings) -> bytes:
    """The whole POST /v1/forecast: checks, cleaning, features, forecasts, JSON."""
    results = forecast(model, histories(request, model, settings))
    return encode(
        {
            "model_name": model.name,
            "model_version": model.version,
            "parameter": model.spec.parameter,
            "results": results,
        }
    )


class SensorAnswers:
    """GET answers by sensor for one (model, snapshot) pair. Both are immutable and swapped
    as wholes, so an answer stays right until either is replaced; each request files its
    answer under the pair it computed with, so a swap never serves a stale one."""

    def __init__(self) -> None:
        self._pair: tuple[LoadedModel | None, OnlineSnapshot | None, dict[int, bytes]] = (
            None,
            None,
            {},
        )

    def get(self, model: LoadedModel, snapshot: OnlineSnapshot, sensor_id: int) -> bytes:
        cached_model, cached_snapshot, answers = self._pair
        if cached_model is not model or cached_snapshot is not snapshot:
            answers = {}
            self._pair = (model, snapshot, answers)
        answer = answers.get(sensor_id)
        if answer is None:
            answer = answers[sensor_id] = sensor_answer(model, snapshot, sensor_id)
        return answer


def sensor_answer(model: LoadedModel, snapshot: OnlineSnapshot, sensor_id: int) -> bytes:
    """GET /v1/sensors/{id}/forecast from the snapshot's latest readings of the sensor."""
    spec = model.spec
    sensor = snapshot.history.sensors.get(sensor_id)
    if sensor is None or sensor.parameter != spec.parameter:
        raise ApiError(
            404,
            "sensor_id",
            f"sensor {sensor_id} is not a {spec.parameter} sensor of the online_features snapshot",
            "unknown_sensor",
        )
    zone_error = snapshot.timezone_errors.get(sensor.location_id)
    if zone_error is not None:  # the pipeline's data, not the request, is at fault
        raise ApiError(503, "sensor_id", f"online_features: {zone_error}", "snapshot_error")
    item = History(
        sensor_id,
        sensor.series,
        snapshot.history.covariates_of(sensor_id),
        snapshot.timezones.get(sensor.location_id),
        None,
    )
    (result,) = forecast(model, [item])
    last = int(sensor.series.hours[-1]) if len(sensor.series) else None
    return encode(
        {
            "model_name": model.name,
            "model_version": model.version,
            "parameter": spec.parameter,
            "location_id": sensor.location_id,
            "last_reading_utc": _iso(last),
            "snapshot_modified_utc": snapshot.modified_at.isoformat().replace("+00:00", "Z"),
            **result,
        }
    )


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@lru_cache(maxsize=8192)
def _iso(hour: int | None) -> str | None:
    if hour is None:
        return None
    return (_EPOCH + dt.timedelta(hours=hour)).strftime("%Y-%m-%dT%H:%M:%SZ")
