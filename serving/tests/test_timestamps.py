"""The byte-level reader of compact UTC ISO 8601 stamps agrees with numpy's parser on every
list it accepts, and leaves everything else to the general path, which names the bad value."""

import datetime as dt
import json
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.errors import ApiError
from serving.timestamps import _compact_lists, read_timestamps

moments = st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2099, 12, 31))
# How clients write JSON arrays: compact (JS, msgspec, orjson), Python's json.dumps default,
# and pretty-printed (only the general path reads that).
STYLES: dict[str, dict[str, Any]] = {
    "compact": {"separators": (",", ":")},
    "json.dumps": {},
    "indented": {"indent": 2},
}


def numpy_seconds(stamps: list[str]) -> list[int]:
    return [int(np.datetime64(s.removesuffix("Z"), "s").astype(np.int64)) for s in stamps]


def raw(stamps: list, style: str = "compact") -> msgspec.Raw:
    return msgspec.Raw(json.dumps(stamps, **STYLES[style]).encode())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(moments, max_size=30), min_size=1, max_size=5),
    st.booleans(),
    st.sampled_from(sorted(STYLES)),
)
def test_stamps_read_as_numpy_reads_them(lists, with_z, style):
    stamps = [
        [t.strftime("%Y-%m-%dT%H:%M:%S") + ("Z" if with_z else "") for t in times]
        for times in lists
    ]
    texts = [raw(s, style) for s in stamps]

    got = read_timestamps([(f"series[{i}].timestamps", text) for i, text in enumerate(texts)])

    assert [g.tolist() for g in got] == [numpy_seconds(s) for s in stamps]
    read_fast = _compact_lists([bytes(t) for t in texts]) is not None
    assert read_fast == (style != "indented" or not any(stamps))


@pytest.mark.parametrize(
    "text",
    [
        b'["2025-02-29T00:00:00Z"]',  # not a leap year
        b'["2025-04-31T00:00:00Z"]',
        b'["2025-13-01T00:00:00Z"]',
        b'["2025-05-01T24:00:00Z"]',
        b'["2025-05-01T13:60:00Z"]',
        b'["1969-12-31T23:00:00Z"]',
        b'["2100-01-01T00:00:00Z"]',
        b'["2025-05-01T13:00:00+02:00"]',  # an offset: numpy's parser converts it
        b'["2025-05-01 13:00:00"]',
        b'["2025-05-01T13:00:00Z","2025-05-01T14:00:00"]',  # Z on some only
        b'["2025-05-01T13:00:00Z","2025-05-01T14:00:00Z" ]',
        b'["2025-05-01T13:00:00Z",  "2025-05-01T14:00:00Z"]',
        b'["2025-05-01T13:00:00Z", "2025-05-01T14:00:00Z","2025-05-01T15:00:00Z"]',
        b'["\\u0032025-05-01T13:00:00Z"]',  # an escape: the general path decodes it
        b'["\xef\xbc\x92025-05-01T13:00:00Z"]',  # not ASCII
        b"[1746104400]",
        b"[1746104400.5]",
        b"5",
        b'{"a": 1}',
        b"[ ]",
    ],
)
def test_anything_else_is_left_to_the_general_path(text):
    assert _compact_lists([text]) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b'["2025-05-01T13:00:00+02:00"]', [1746097200]),
        (b'["2025-05-01T13:00:00Z", "2025-05-01T14:00:00Z","2025-05-01T15:00:00Z"]', None),
        (b'["\\u0032025-05-01T13:00:00Z"]', [1746104400]),
        (b"[1746104400]", [1746104400]),
        (b'[\n  "2025-05-01T13:00:00Z"\n]', [1746104400]),
        (b"[ ]", []),
    ],
)
def test_the_general_path_reads_what_the_compact_one_leaves(text, expected):
    (got,) = read_timestamps([("series[0].timestamps", msgspec.Raw(text))])
    if expected is None:  # mixed separators
        expected = [1746104400, 1746108000, 1746111600]
    assert got.tolist() == expected


def test_a_request_reads_in_one_pass_and_a_bad_stamp_is_named():
    good = [
        ("series[0].timestamps", raw(["2025-05-01T13:00:00Z", "2025-05-01T14:00:00Z"])),
        ("series[0].covariates.pm10.timestamps", raw([])),
        ("series[1].timestamps", raw(["2025-05-01T14:00:00Z"])),
    ]
    first, empty, second = read_timestamps(good)
    assert first.tolist() == [1746104400, 1746108000] and second.tolist() == [1746108000]
    assert empty.dtype == np.int64 and empty.size == 0

    mixed = [good[0], ("series[1].timestamps", raw([0]))]
    assert [s.tolist() for s in read_timestamps(mixed)] == [[1746104400, 1746108000], [0]]

    bad = [*good, ("series[2].timestamps", raw(["2025-05-01T13:00:00Z", "2025-02-30T00:00:00Z"]))]
    with pytest.raises(ApiError) as caught:
        read_timestamps(bad)
    assert caught.value.status == 422 and caught.value.field == "series[2].timestamps[1]"


@pytest.mark.parametrize(
    ("text", "field", "kind"),
    [
        (b"5", "series[0].timestamps", "type_error"),
        (b'[0, 1.5, "x"]', "series[0].timestamps[1]", "type_error"),
        (b'[0, "x"]', "series[0].timestamps[1]", "datetime_parsing"),
        (b"[0, 10000000000000000]", "series[0].timestamps[1]", "value_error"),
        (
            b'["2025-05-01T13:00:00Z", "' + b"9" * 65 + b'"]',
            "series[0].timestamps[1]",
            "type_error",
        ),
    ],
)
def test_what_is_not_a_time_is_named(text, field, kind):
    with pytest.raises(ApiError) as caught:
        read_timestamps([("series[0].timestamps", msgspec.Raw(text))])
    assert (caught.value.status, caught.value.field, caught.value.kind) == (422, field, kind)
