"""The compiled readers of a request's lists (UTC ISO 8601 stamps, JSON numbers) agree with
numpy's parser and msgspec on every list they accept, and leave everything else to the
general path, which names the bad value."""

import datetime as dt
import json
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.errors import ApiError
from serving.json_arrays import STAMP_BYTES, read_numbers, read_utc_stamps
from serving.readings import _compiled_read, read_timestamps, read_values

moments = st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2099, 12, 31))
# How clients write JSON arrays: compact (JS, msgspec, orjson), Python's json.dumps default,
# and pretty-printed.
STYLES: dict[str, dict[str, Any]] = {
    "compact": {"separators": (",", ":")},
    "json.dumps": {},
    "indented": {"indent": 2},
}


def numpy_seconds(stamps: list[str]) -> list[int]:
    return [int(np.datetime64(s.removesuffix("Z"), "s").astype(np.int64)) for s in stamps]


def raw(stamps: list, style: str = "compact") -> msgspec.Raw:
    return msgspec.Raw(json.dumps(stamps, **STYLES[style]).encode())


def read_fast(texts: list[bytes], reader=read_utc_stamps, *limit: float) -> np.ndarray | None:
    """What the compiled path reads from `texts` (all items in one array), None if it
    leaves them to the general path."""
    dtype = np.int64 if reader is read_utc_stamps else np.float64
    read = (lambda b, ends, out, counts: reader(b, ends, *limit, out, counts)) if limit else reader
    least = STAMP_BYTES if reader is read_utc_stamps else 2
    got, counts = _compiled_read(read, [("x", msgspec.Raw(t)) for t in texts], dtype, least)
    return None if (counts < 0).any() else got.items


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

    got = read_timestamps(
        [(f"series[{i}].timestamps", text) for i, text in enumerate(texts)]
    ).lists()

    assert [g.tolist() for g in got] == [numpy_seconds(s) for s in stamps]
    assert read_fast([bytes(t) for t in texts]) is not None  # and by the compiled path


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
        b'["\\u0032025-05-01T13:00:00Z"]',  # an escape: the general path decodes it
        b'["\xef\xbc\x92025-05-01T13:00:00Z"]',  # not ASCII
        b'["2025-05-01T13:00:00ZZ"]',
        b'["2025-05-01T13:00:00Z" "2025-05-01T14:00:00Z"]',
        b'["2025-05-01T13:00:00Z",]',
        b'["2025-05-01T13:00:00Z"',
        b"[1746104400]",
        b"[1746104400.5]",
        b"5",
        b'{"a": 1}',
        b'[["2025-05-01T13:00:00Z"]]',
    ],
)
def test_anything_else_is_left_to_the_general_path(text):
    assert read_fast([text]) is None


@pytest.mark.parametrize(
    ("text", "expected", "fast"),
    [
        (b'["2025-05-01T13:00:00+02:00"]', [1746097200], False),
        (b'["\\u0032025-05-01T13:00:00Z"]', [1746104400], False),
        (b"[1746104400]", [1746104400], False),
        (b'["2025-05-01T13:00:00Z", "2025-05-01T14:00:00","2025-05-01T15:00:00Z"]', None, True),
        (
            b'[\n  "2025-05-01T13:00:00Z" ,\t"2025-05-01T14:00:00Z"\n]',
            [1746104400, 1746108000],
            True,
        ),
        (b"[ ]", [], True),
    ],
)
def test_every_form_reads_as_numpy_reads_it(text, expected, fast):
    (got,) = read_timestamps([("series[0].timestamps", msgspec.Raw(text))]).lists()
    if expected is None:
        expected = [1746104400, 1746108000, 1746111600]
    assert got.tolist() == expected
    assert (read_fast([text]) is not None) == fast


def test_a_request_reads_in_one_pass_and_a_bad_stamp_is_named():
    good = [
        ("series[0].timestamps", raw(["2025-05-01T13:00:00Z", "2025-05-01T14:00:00Z"])),
        ("series[0].covariates.pm10.timestamps", raw([])),
        ("series[1].timestamps", raw(["2025-05-01T14:00:00Z"])),
    ]
    first, empty, second = read_timestamps(good).lists()
    assert first.tolist() == [1746104400, 1746108000] and second.tolist() == [1746108000]
    assert empty.dtype == np.int64 and empty.size == 0

    mixed = [good[0], ("series[1].timestamps", raw([0]))]
    assert [s.tolist() for s in read_timestamps(mixed).lists()] == [[1746104400, 1746108000], [0]]

    bad = [*good, ("series[2].timestamps", raw(["2025-05-01T13:00:00Z", "2025-02-30T00:00:00Z"]))]
    with pytest.raises(ApiError) as caught:
        read_timestamps(bad)
    assert caught.value.status == 422 and caught.value.field == "series[2].timestamps[1]"


# ---- values ----------------------------------------------------------------------------------

values_ = st.one_of(
    st.none(), st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
)


def bits(values: np.ndarray) -> list[int]:
    return np.asarray(values, dtype=np.float64).view(np.uint64).tolist()


def as_read_by_msgspec(values: list) -> np.ndarray:
    return np.array(msgspec.json.decode(json.dumps(values)), dtype=np.float64)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(values_, max_size=30), min_size=1, max_size=5),
    st.sampled_from(sorted(STYLES)),
)
def test_values_read_exactly_as_msgspec_reads_them(lists, style):
    texts = [msgspec.Raw(json.dumps(v, **STYLES[style]).encode()) for v in lists]

    got = read_values([(f"series[{i}].values", text) for i, text in enumerate(texts)]).lists()

    assert [bits(g) for g in got] == [bits(as_read_by_msgspec(v)) for v in lists]


decimals = st.builds(
    lambda mantissa, exponent, form, sign: (
        sign
        + {
            "plain": f"{mantissa}e{exponent}",
            "point": f"{mantissa / 10**3:.3f}" if exponent == 0 else f"{mantissa}E{exponent:+d}",
            "fraction": f"0.{str(mantissa).zfill(abs(exponent) + 1)}",
            "integer": str(mantissa),
        }[form]
    ),
    st.integers(0, 10**15),
    st.integers(-30, 30),
    st.sampled_from(["plain", "point", "fraction", "integer"]),
    st.sampled_from(["", "-"]),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(decimals, min_size=1, max_size=20))
def test_decimal_numbers_in_every_form_read_as_python_reads_them(numbers):
    text = ("[" + ",".join(numbers) + "]").encode()
    expected = [float(json.loads(n)) for n in numbers]  # an int literal is an int first
    if any(abs(v) > 1e9 for v in expected):
        return  # over the limit: the general path says so (below)

    fast = read_fast([text], read_numbers, 1e9)
    (got,) = read_values([("series[0].values", msgspec.Raw(text))]).lists()

    assert bits(got) == bits(np.array(expected))
    if fast is not None:  # the compiled path answered: with exactly these numbers
        assert bits(fast) == bits(np.array(expected))


# Readings as sensors report them: a few digits, often one decimal. Up to 7 bytes the reader
# takes all of a number's bytes at once; longer ones take the byte-by-byte loop.
short_numbers = st.builds(
    lambda sign, whole, fraction: sign + str(whole) + (f".{fraction}" if fraction else ""),
    st.sampled_from(["", "-"]),
    st.one_of(st.integers(0, 9), st.integers(0, 99999999)),
    st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=7)),
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.one_of(short_numbers, st.just("null")), min_size=1, max_size=20),
    st.sampled_from(sorted(STYLES)),
)
def test_short_numbers_read_by_the_compiled_path_as_python_reads_them(numbers, style):
    separator, indent = (",", "") if style == "compact" else (", ", "\n  " * (style == "indented"))
    text = ("[" + indent + separator.join(numbers) + "]").encode()
    expected = [np.nan if n == "null" else float(json.loads(n)) for n in numbers]

    fast = read_fast([text], read_numbers, 1e9)

    assert fast is not None and bits(fast) == bits(np.array(expected))


@pytest.mark.parametrize(
    "text",
    [
        b"[1.0000000000000000001]",  # too many digits for one exact operation
        b"[123456789.01234567]",  # over 2^53 in its digits
        b"[1e-30]",
        b"[1e23]",
        b"[01]",
        b"[1.]",
        b"[.5]",
        b"[+1]",
        b"[1,]",
        b"[,1]",
        b"[nul]",
        b"[true]",
        b"[00]",  # each form the compiled path reads a word at a time, broken
        b"[-01.5]",
        b"[1.2.3]",
        b"[1..2]",
        b"[-]",
        b"[--1]",
        b"[1-2]",
        b"[1.5x]",
        b"[12]3]",
        b"[1 2]",
        b'["1"]',
        b"[1e10]",  # over the limit
        b"5",
        b"[[1]]",
    ],
)
def test_the_compiled_reader_leaves_anything_unusual_to_the_general_path(text):
    assert read_fast([text], read_numbers, 1e9) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            b"[1.0000000000000000001, 123456789.01234567, 0e400, 1e-30]",
            [1.0, 123456789.01234567, 0.0, 1e-30],
        ),
        (b"[ 1 ,\n null ]", [1.0, None]),
        (b"[-0, -0.0, -0e0, -0E+3, 0]", [0.0, -0.0, -0.0, -0.0, 0.0]),  # an int -0 is 0
        (b"[]", []),
    ],
)
def test_the_general_path_reads_what_the_compiled_one_leaves(text, expected):
    (got,) = read_values([("series[0].values", msgspec.Raw(text))]).lists()
    assert bits(got) == bits(np.array(expected, dtype=np.float64))


def test_the_compiled_reader_reads_null_as_nan():
    got = read_fast([b"[1.5, null, 2]", b"[null]"], read_numbers, 1e9)

    assert got is not None
    assert bits(got) == bits(np.array([1.5, np.nan, 2.0, np.nan]))


def test_a_list_the_compiled_reader_leaves_takes_the_general_path_alone(monkeypatch):
    import serving.readings as readings

    lists = [b"[1.5, null, 2]", b"[0.30000000000000004, 23.456789012345678]", b"[7]"]
    general = []
    decode = readings._decode
    monkeypatch.setattr(readings, "_decode", lambda *a: general.append(a[2]) or decode(*a))

    got = read_values([(f"series[{i}].values", msgspec.Raw(t)) for i, t in enumerate(lists)])

    assert general == ["series[1].values"]
    expected = [[1.5, np.nan, 2.0], [0.30000000000000004, 23.456789012345678], [7.0]]
    assert [bits(a) for a in got.lists()] == [bits(np.array(e)) for e in expected]
    stamps = [b'["2025-05-01T13:00:00Z"]', b'["2025-05-01T14:00:00+01:00", 1746108000]']
    got = read_timestamps([(f"s[{i}].timestamps", msgspec.Raw(t)) for i, t in enumerate(stamps)])
    assert [a.tolist() for a in got.lists()] == [[1746104400], [1746104400, 1746108000]]
    assert general == ["series[1].values", "s[1].timestamps"]


@pytest.mark.parametrize(
    ("field", "text", "at", "kind"),
    [
        ("timestamps", b"5", "", "type_error"),
        ("timestamps", b'[0, 1.5, "x"]', "[1]", "type_error"),
        ("timestamps", b'[0, "x"]', "[1]", "datetime_parsing"),
        ("timestamps", b"[0, 10000000000000000]", "[1]", "value_error"),
        ("timestamps", b'["2025-05-01T13:00:00Z", "' + b"9" * 65 + b'"]', "[1]", "value_error"),
        ("values", b"5", "", "type_error"),
        ("values", b'[1, "x"]', "[1]", "type_error"),
        ("values", b"[1, 1e10]", "[1]", "value_error"),
        ("values", b"[1, -1e10]", "[1]", "value_error"),
        ("values", b"[1, true]", "[1]", "type_error"),
    ],
)
def test_what_is_not_a_time_or_a_value_is_named(field, text, at, kind):
    read = read_timestamps if field == "timestamps" else read_values
    with pytest.raises(ApiError) as caught:
        read([(f"series[0].{field}", msgspec.Raw(text))])
    assert (caught.value.status, caught.value.field, caught.value.kind) == (
        422,
        f"series[0].{field}{at}",
        kind,
    )
