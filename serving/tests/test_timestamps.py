"""The byte-level reader of UTC ISO 8601 stamps agrees with numpy's parser on every value it
accepts, and leaves everything else to the general path, which names the bad value."""

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.forecasting import ApiError, _all_seconds, _utc_iso_seconds

moments = st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2099, 12, 31))


def numpy_seconds(stamps: list[str]) -> np.ndarray:
    return np.array([np.datetime64(s.removesuffix("Z"), "s") for s in stamps])


@settings(max_examples=200, deadline=None)
@given(st.lists(moments, min_size=1, max_size=50), st.booleans())
def test_utc_stamps_read_as_numpy_reads_them(times, with_z):
    stamps = [t.strftime("%Y-%m-%dT%H:%M:%S") + ("Z" if with_z else "") for t in times]
    assert np.array_equal(_utc_iso_seconds(stamps), numpy_seconds(stamps))


@pytest.mark.parametrize(
    "stamps",
    [
        ["2025-02-29T00:00:00Z"],  # not a leap year
        ["2025-04-31T00:00:00Z"],
        ["2025-13-01T00:00:00Z"],
        ["2025-05-01T24:00:00Z"],
        ["2025-05-01T13:60:00Z"],
        ["2025-05-01T13:00:00+02:00"],  # an offset: numpy's parser converts it
        ["2025-05-01 13:00:00"],
        ["2025-05-01T13:00:00Z", "2025-05-01T14:00:00"],  # Z on some only
        ["2025-05-01T13:00:00Z\n2025-05-01T14:00:00Z"],  # two stamps in one string
        ["2025-05-01T13:00:00Z2", "025-05-01T13:00:00Z"],  # lengths that add up
        ["２025-05-01T13:00:00Z"],  # not ASCII
        [1746104400],
        [],
    ],
)
def test_anything_else_is_left_to_the_general_parser(stamps):
    assert _utc_iso_seconds(stamps) is None


def test_a_request_parses_in_one_pass_and_a_bad_stamp_is_named():
    good = [
        ("series[0].timestamps", ["2025-05-01T13:00:00Z", "2025-05-01T14:00:00Z"]),
        ("series[0].covariates.pm10.timestamps", ["2025-05-01T14:00:00Z"]),
    ]
    first, second = _all_seconds(good)
    assert first.tolist() == [1746104400, 1746108000] and second.tolist() == [1746108000]

    mixed = [("series[0].timestamps", ["2025-05-01T13:00:00Z"]), ("series[1].timestamps", [0])]
    assert [s.tolist() for s in _all_seconds(mixed)] == [[1746104400], [0]]

    bad = [*good, ("series[1].timestamps", ["2025-05-01T13:00:00Z", "2025-02-30T00:00:00Z"])]
    with pytest.raises(ApiError) as caught:
        _all_seconds(bad)
    assert caught.value.status == 422 and caught.value.field == "series[1].timestamps[1]"
