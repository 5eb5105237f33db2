"""Reading a request's readings: its lists of timestamps and of values, each kept as JSON
text by the body reader (`msgspec.Raw`) and read here, all lists of a request at once.

A request with a month of history carries thousands of readings; a Python object per
reading (a str or a float from the JSON reader, then a datetime or an array element) costs
more than the whole forecast. The usual forms are read from the bytes by compiled loops
(`json_arrays`), a few ns a reading: timestamps "YYYY-MM-DDTHH:MM:SSZ" (or without
the Z) and values that are JSON numbers of up to ~15 digits, or null. A list with anything
else (offsets, Unix seconds, longer numbers) takes the general path: msgspec decodes it and
numpy parses it, which also names the first bad value, as `series[0].timestamps[3]`.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec
import numpy as np

from serving.errors import ApiError, invalid
from serving.json_arrays import PADDING, STAMP_BYTES, read_numbers, read_utc_stamps
from serving.schemas import MAX_ABS_VALUE, READ_TIMESTAMPS, READ_VALUES

# Readings and origins outside these years are refused: nothing was measured before, and
# hour arithmetic stays far from every calendar limit.
FIRST_YEAR, END_YEAR = 1970, 2100
FIRST_SECOND = 0  # 1970-01-01
LAST_SECOND = 4102444800  # 2100-01-01
# numpy converts "+02:00" and "Z" to UTC as it parses, and says it keeps no time zone.
warnings.filterwarnings(
    "ignore",
    message="no explicit representation of timezones",
    category=UserWarning,
    module=__name__,
)


@dataclass(frozen=True)
class Laid:
    """The items of several lists one after the other: list k is
    items[offsets[k]:offsets[k + 1]]. A request's lists stay in one array from the reader
    through cleaning: no array, and no copy, per list."""

    items: np.ndarray
    offsets: np.ndarray

    @classmethod
    def of(cls, lists: Sequence[np.ndarray], dtype: type[np.generic]) -> Laid:
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum([a.size for a in lists], out=offsets[1:])
        return cls(np.concatenate([np.empty(0, dtype=dtype), *lists]), offsets)

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def lists(self) -> list[np.ndarray]:
        return [self.items[a:b] for a, b in itertools.pairwise(self.offsets.tolist())]


def read_timestamps(lists: Sequence[tuple[str, msgspec.Raw]]) -> Laid:
    """Unix seconds (int64) of each (JSON path, JSON text of a list of timestamps), or a 422
    naming the first stamp that is not a time between 1970 and 2100."""
    return _read(
        read_utc_stamps,
        lists,
        np.int64,
        STAMP_BYTES,
        lambda at, raw: seconds(_decode(READ_TIMESTAMPS, raw, at), at),
    )


def read_values(lists: Sequence[tuple[str, msgspec.Raw]]) -> Laid:
    """float64 of each (JSON path, JSON text of a list of values), NaN for null, or a 422
    naming the first that is not a number within ±MAX_ABS_VALUE."""
    return _read(
        partial(read_numbers, limit=MAX_ABS_VALUE),
        lists,
        np.float64,
        2,  # a digit and a comma
        # None becomes NaN
        lambda at, raw: np.array(_decode(READ_VALUES, raw, at), dtype=np.float64),
    )


def _read(
    reader: Callable[..., None],
    lists: Sequence[tuple[str, msgspec.Raw]],
    dtype: type[np.generic],
    least_bytes: int,
    general: Callable[[str, msgspec.Raw], np.ndarray],
) -> Laid:
    """Every list by the compiled `reader` in one pass; one it leaves (a network's
    full-precision means, say) by `general` alone."""
    laid, counts = _compiled_read(reader, lists, dtype, least_bytes)
    if (counts >= 0).all():
        return laid
    return Laid.of(
        [
            general(at, raw) if n < 0 else items
            for (at, raw), n, items in zip(lists, counts.tolist(), laid.lists(), strict=True)
        ],
        dtype,
    )


def _compiled_read(
    reader: Callable[..., None],
    lists: Sequence[tuple[str, msgspec.Raw]],
    dtype: type[np.generic],
    least_bytes: int,
) -> tuple[Laid, np.ndarray]:
    """What `reader` reads from all lists in one pass over their bytes (each of its items
    takes at least `least_bytes` of them), and each list's count of items: -1 for a list it
    leaves to the general path, which is empty in the Laid."""
    raws = [raw for _, raw in lists]
    buffer = np.frombuffer(b"".join([*raws, PADDING]), dtype=np.uint8)
    ends = np.cumsum([len(raw) for raw in raws], dtype=np.int64)
    out: np.ndarray = np.empty(buffer.size // least_bytes + 1, dtype=dtype)
    counts = np.zeros(len(lists), dtype=np.int64)
    reader(buffer, ends=ends, out=out, counts=counts)
    offsets = np.concatenate([[0], np.cumsum(np.maximum(counts, 0))])
    return Laid(out[: offsets[-1]], offsets), counts


def _decode(decoder: msgspec.json.Decoder[Any], raw: msgspec.Raw, at: str) -> Any:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:  # "Expected `str | int`, got `float` - at `$[2]`"
        raise invalid(str(exc), under=at) from None


def seconds(stamps: Sequence[str | int], at: str, indexed: bool = True) -> np.ndarray:
    """Unix seconds (UTC) of ISO 8601 strings or Unix seconds: the general path."""
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
    out = parsed.astype(np.int64)
    outside = (out < FIRST_SECOND) | (out >= LAST_SECOND)
    if outside.any():
        j = int(np.argmax(outside))
        raise ApiError(
            422,
            f"{at}[{j}]" if indexed else at,
            f"must be between {FIRST_YEAR}-01-01 and {END_YEAR}-01-01 (UTC)",
            "value_error",
        )
    return out


def _parse(stamps: Sequence[str | int]) -> np.ndarray:
    if all(type(s) is str for s in stamps):
        # A trailing Z is UTC, what numpy assumes anyway; left on, numpy warns per value.
        return np.strings.rstrip(np.array(stamps, dtype=str), "Z").astype("datetime64[s]")
    if all(type(s) is int for s in stamps):
        return np.array(stamps, dtype=np.int64).astype("datetime64[s]")
    return np.array([np.datetime64(s, "s") for s in stamps], dtype="datetime64[s]")


def _first_unreadable(stamps: Sequence[str | int]) -> int:
    for j, stamp in enumerate(stamps):
        try:
            if np.isnat(np.datetime64(stamp, "s")):
                return j
        except (ValueError, TypeError, OverflowError):
            return j
    return 0
