"""Reading a request's readings: its lists of timestamps and of values, each kept as JSON
text by the body reader (`msgspec.Raw`) and read here, all lists of a request at once.

A request with a month of history carries thousands of readings; a Python object per
reading (a str or a float from the JSON reader, then a datetime or an array element) costs
more than the whole forecast. The usual forms are read from the bytes by compiled loops
(`aq_assets.ml.kernels`): timestamps `"YYYY-MM-DDTHH:MM:SSZ"` (or without the Z) separated
by "," or ", ", and values that are plain JSON numbers or null. Anything else (offsets, Unix
seconds, other spacing, numbers with more than ~15 digits) takes the general path: msgspec
decodes the list and numpy parses it, which also names the first bad value, as
`series[0].timestamps[3]`.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from serving.errors import ApiError, invalid
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


def read_timestamps(lists: Sequence[tuple[str, msgspec.Raw]]) -> list[np.ndarray]:
    """Unix seconds (int64) of each (JSON path, JSON text of a list of timestamps), or a 422
    naming the first stamp that is not a time between 1970 and 2100."""
    texts = [bytes(raw) for _, raw in lists]
    fast = _compact_lists(texts)
    if fast is not None:
        return fast
    return [
        seconds(_decode(READ_TIMESTAMPS, text, at), at)
        for (at, _), text in zip(lists, texts, strict=True)
    ]


def read_values(lists: Sequence[tuple[str, msgspec.Raw]]) -> list[np.ndarray]:
    """float64 of each (JSON path, JSON text of a list of values), NaN for null, or a 422
    naming the first that is not a number within ±MAX_ABS_VALUE."""
    from aq_assets.ml.kernels import read_json_numbers

    texts = [bytes(raw) for _, raw in lists]
    buffer = b"".join(texts)
    out = np.empty(len(buffer) // 2 + 1)  # every value takes a byte and a comma at least
    counts = np.empty(len(texts), dtype=np.int64)
    if read_json_numbers(np.frombuffer(buffer, dtype=np.uint8), MAX_ABS_VALUE, out, counts):
        ends = np.cumsum(counts).tolist()
        return [out[a:b] for a, b in itertools.pairwise([0, *ends])]
    return [
        np.array(_decode(READ_VALUES, text, at), dtype=np.float64)  # None becomes NaN
        for (at, _), text in zip(lists, texts, strict=True)
    ]


def _decode(decoder: msgspec.json.Decoder[Any], text: bytes, at: str) -> Any:
    try:
        return decoder.decode(text)
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


# ---------------------------------------------------------------------------------------------
# Fixed-width stamps, read from their bytes


class _Layout:
    """One stamp and what follows it, as a byte template: "0" marks a digit, any other
    byte must be itself."""

    def __init__(self, template: str) -> None:
        self.low = np.frombuffer(template.encode(), dtype=np.uint8)
        self.width = self.low.size
        digit = self.low == ord("0")
        self.high = np.where(digit, ord("9"), self.low).astype(np.uint8)
        # The positions of the digits of YYYY MM DD hh mm ss, in order.
        self.digits = np.flatnonzero(digit).astype(np.int64)


def _layouts(separator: str) -> dict[int, _Layout]:
    stamps = ("0000-00-00T00:00:00Z", "0000-00-00T00:00:00")
    return {len(s): _Layout(f'"{s}"{separator}') for s in stamps}


# By separator, as compact JSON and as Python's json.dumps write arrays, then stamp length.
_COMPACT = {separator: _layouts(separator) for separator in (",", ", ")}


def _compact_lists(texts: list[bytes]) -> list[np.ndarray] | None:
    """Each JSON array of `texts` read as compact stamps, all in one pass; None unless every
    one is such an array, with the same stamp form and separator."""
    inner = [text[1:-1] for text in texts if len(text) > 2]
    if not all(text[:1] == b"[" and text[-1:] == b"]" for text in texts):
        return None
    if not inner:
        return [np.empty(0, dtype=np.int64) for _ in texts]
    quoted = inner[0].find(b'"', 1) + 1  # the first stamp with its quotes
    # What follows the first stamp of a list of several; lists of one stamp have none.
    after = next((part[quoted : quoted + 2] for part in inner if len(part) > quoted), b",")
    sep = after.removesuffix(b'"')
    layout = _COMPACT.get(sep.decode("ascii", "replace"), {}).get(quoted - 2)
    if layout is None:
        return None
    if any((len(part) + len(sep)) % layout.width for part in inner):
        return None
    parsed = _fixed_width(sep.join(inner) + sep, layout)
    if parsed is None:
        return None
    ends = itertools.accumulate(
        (len(text) - 2 + len(sep)) // layout.width if len(text) > 2 else 0 for text in texts
    )
    return [parsed[a:b] for a, b in itertools.pairwise([0, *ends])]


def _fixed_width(buffer: bytes, layout: _Layout) -> np.ndarray | None:
    """Unix seconds (int64) of `buffer`, a run of stamps each laid out as `layout`; None
    if any byte, date or time is not what a stamp between 1970 and 2100 has."""
    if len(buffer) % layout.width:
        return None
    from aq_assets.ml.kernels import read_utc_stamps

    out = np.empty(len(buffer) // layout.width, dtype=np.int64)
    stamps = np.frombuffer(buffer, dtype=np.uint8)
    if not read_utc_stamps(stamps, layout.low, layout.high, layout.digits, out):
        return None
    return out
