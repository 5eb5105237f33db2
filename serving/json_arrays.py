"""Lists of JSON numbers and UTC timestamps read straight from a request's bytes by loops
compiled with numba, a few ns a reading (`serving.readings` says when they answer and
what takes the general path). Measured against msgspec's typed decoding in
`benchmarks/README.md` (the service vs `mlflow models serve`): a Python object per reading
costs more than the whole forecast of a month's history.
"""

from __future__ import annotations

import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros  # LLVM's cttz: one instruction

from aq_assets.ml.kernels import compiled

# Bytes after the last list that the readers may load, unread, as part of an 8-byte word
# (not spaces, which a list may end with).
PADDING = bytes(8)


@compiled
def read_numbers(buffer, ends, limit, out, counts):
    """JSON arrays of numbers and null laid end to end (`[1.5,null] [2e3]`, each valid JSON
    as msgspec checked it, array k ending before byte `ends[k]`, the last followed by
    PADDING) into `out` (NaN for null; at least len(buffer) // 2 + 1 long: a digit and a
    comma each), and the length of each array into `counts`; -1 for an array with anything
    else, a number over `limit` in size, or one that is not exactly a float by one
    multiplication or division (more than 2^53 in its digits, or a power of ten beyond 22):
    the general path decides those. Exact where it answers: the one IEEE operation on exact
    operands rounds correctly (Clinger's fast path), as every correct float reader must."""
    _read_arrays(buffer, ends, _NUMBERS, limit, out, counts)


@compiled
def read_utc_stamps(buffer, ends, out, counts):
    """JSON arrays of "YYYY-MM-DDTHH:MM:SS" or "...Z" stamps laid end to end as in
    `read_numbers` into `out` (Unix seconds; at least len(buffer) // STAMP_BYTES + 1 long)
    and the length of each array into `counts`; -1 for an array with anything else, or a
    time not between 1970 and 2100."""
    _read_arrays(buffer, ends, _STAMPS, 2.0**62, out, counts)


_NUMBERS, _STAMPS = 0, 1  # the items `_read_arrays` reads (numba caches no function passed)
STAMP_BYTES = 21  # the fewest a stamp takes: "YYYY-MM-DDTHH:MM:SS" with its quotes


@compiled
def _read_arrays(buffer, ends, items, limit, out, counts):
    """The walk both readers share: each array's items one after the other in `out`, none
    for an array it leaves (`_read_array`)."""
    start = 0
    n = 0
    for k in range(counts.size):
        read = _read_array(buffer, start, ends[k], items, limit, out, n)
        counts[k] = read
        n += max(read, 0)
        start = ends[k]


@compiled(inline="always")
def _read_array(buffer, at, end, items, limit, out, n):
    """How many items the array in buffer[at:end] holds, written from out[n] on; -1 if one
    is not of `items` or over `limit`. Most numbers are read by `_short_number` here in the
    loop: called from `_item` instead, numba compiles the loop ~60% slower."""
    at = _skip_space(buffer, at)
    if at >= end or _byte(buffer, at) != 91:  # [
        return -1
    at = _skip_space(buffer, at + 1)
    first = n
    if at < end and _byte(buffer, at) == 93:  # ]: empty
        at += 1
    else:
        while True:
            size, value = 0, 0.0
            if items == _NUMBERS and at + 8 <= buffer.size:
                size, value = _short_number(_word(buffer, at))
            if size:
                at += size
            else:
                at, value = _item(buffer, at, items)
            if at < 0 or abs(value) > limit:  # NaN (null) is not over it
                return -1
            out[n] = value
            n += 1
            at = _skip_space(buffer, at)
            if at >= end:
                return -1
            if _byte(buffer, at) == 93:  # ]
                at += 1
                break
            if _byte(buffer, at) != 44:  # ,
                return -1
            at = _skip_space(buffer, at + 1)
    return n - first if _skip_space(buffer, at) == end else -1


@compiled(inline="always")
def _skip_space(buffer, at):
    while at < buffer.size and _is_space(_byte(buffer, at)):
        at += 1
    return at


@compiled(inline="always")
def _is_space(byte):
    return byte == 32 or byte == 10 or byte == 13 or byte == 9


@compiled(inline="always")
def _item(buffer, at, items):
    """(index after, value) of the item at `at` (a number `_short_number` leaves);
    index -1 if it is not one of `items`."""
    if items == _STAMPS:
        end, seconds = _utc_stamp(buffer, at)
        return end, float(seconds)  # exact: under 2^53
    if at + 4 <= buffer.size and _byte(buffer, at) == 110:  # null (msgspec checked the JSON)
        return at + 4, np.nan
    return _json_number(buffer, at)


@compiled(inline="always")
def _byte(buffer, at):
    """buffer[at] by an unsigned index: numba adds the array's size to a negative signed
    index, a compare and a select on every access (~40% of the time of reading stamps)."""
    return buffer[np.uint64(at)]


@compiled(inline="always")
def _word(buffer, at):
    """The 8 bytes from `at` as one little-endian integer (the compiler makes it one load)."""
    at = np.uint64(at)
    word = np.uint64(buffer[at])
    for k in range(1, 8):
        word |= np.uint64(buffer[at + np.uint64(k)]) << np.uint64(8 * k)
    return word


@compiled(inline="always")
def _short_number(word):
    """(bytes, value) of a JSON number of at most 7 bytes (`-123.45`) at the start of `word`
    and ended by , or ] in it; (0, 0.0) for anything else, which `_json_number` reads. Most
    readings take this path: every byte of the number is checked at once (SWAR), not one
    after the other in a loop whose exit the processor cannot predict."""
    ends = _zero_bytes(word ^ _COMMAS) | _zero_bytes(word ^ _CLOSES)
    if ends == 0:
        return 0, 0.0
    size = np.int64(trailing_zeros(ends) >> np.uint64(3))
    m = size  # the bytes of digits and point
    negative = (word & np.uint64(0xFF)) == np.uint64(45)  # -
    if negative:
        word >>= np.uint64(8)
        m -= 1
    if m < 1:
        return 0, 0.0
    others = _non_digits(word) & (_ALL >> np.uint64(64 - 8 * m))
    whole = m  # digits before the point
    if others:  # it must be one point with digits on both sides; the digits are closed up
        whole = np.int64(trailing_zeros(others) >> np.uint64(3))
        point = np.uint64(8 * whole)
        if others != _HIGH_BIT << point or (word >> point) & np.uint64(0xFF) != np.uint64(46):
            return 0, 0.0
        if whole < 1 or whole > m - 2:
            return 0, 0.0
        below = (np.uint64(1) << point) - np.uint64(1)
        word = (word & below) | ((word >> np.uint64(8)) & ~below)
        m -= 1
    if whole > 1 and word & np.uint64(0xFF) == np.uint64(48):  # a leading 0 is alone
        return 0, 0.0
    fraction = m - whole
    # Exact operands (at most 7 digits, 10^5), one correctly rounded IEEE division.
    value = float(_digits_value(word, m)) / _POWERS_OF_TEN[np.uint64(fraction)]
    return size, -value if negative and (value or fraction) else value


@compiled(inline="always")
def _zero_bytes(word):
    """The top bit of each byte of `word` that is 0, exact up to the lowest such byte."""
    return (word - _ONES) & ~word & _HIGH_BITS


@compiled(inline="always")
def _non_digits(word):
    """The top bit of each byte of `word` that is not an ASCII digit."""
    shifted = word ^ _ZEROS  # a digit's byte becomes 0-9
    return (((shifted & _LOW_BITS) + _OVER_NINE) | shifted) & _HIGH_BITS


@compiled(inline="always")
def _digits_value(word, count):
    """The number the first `count` (1-8) bytes of `word`, all digits, write: the digits
    moved to the top with 0s before them, then summed in pairs, fours and eights by three
    multiplications (the SWAR step of simdjson and fast_float)."""
    if count < 8:
        word = (word << np.uint64(8 * (8 - count))) | (_ZEROS >> np.uint64(8 * count))
    word -= _ZEROS
    word = word * np.uint64(10) + (word >> np.uint64(8))
    word = (
        (word & _PAIRS) * np.uint64(100 + (1000000 << 32))
        + ((word >> np.uint64(16)) & _PAIRS) * np.uint64(1 + (10000 << 32))
    ) >> np.uint64(32)
    return np.int64(word & np.uint64(0xFFFFFFFF))


_ONES = np.uint64(0x0101010101010101)
_ZEROS = np.uint64(0x3030303030303030)  # "00000000"
_COMMAS = np.uint64(0x2C2C2C2C2C2C2C2C)
_CLOSES = np.uint64(0x5D5D5D5D5D5D5D5D)  # ]
_LOW_BITS = np.uint64(0x7F7F7F7F7F7F7F7F)
_HIGH_BITS = np.uint64(0x8080808080808080)
_HIGH_BIT = np.uint64(0x80)
_OVER_NINE = np.uint64(0x7676767676767676)  # 0x80 - 10 in each byte
_PAIRS = np.uint64(0x000000FF000000FF)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


@compiled(inline="always")
def _utc_stamp(buffer, at):
    """(index after, Unix seconds) of the stamp at `at`; index -1 if it is not one."""
    end = at + 21  # "YYYY-MM-DDTHH:MM:SS" with its quotes
    if end + 1 > buffer.size:
        return -1, 0
    if _byte(buffer, end - 1) == 90:  # Z
        end += 1
    if (
        _byte(buffer, at) != 34  # "
        or _byte(buffer, end - 1) != 34
        or _byte(buffer, at + 5) != 45  # -
        or _byte(buffer, at + 8) != 45
        or _byte(buffer, at + 11) != 84  # T
        or _byte(buffer, at + 14) != 58  # :
        or _byte(buffer, at + 17) != 58
    ):
        return -1, 0
    year = _digits(buffer, at + 1, 4) - FIRST_YEAR
    month = _digits(buffer, at + 6, 2)
    day = _digits(buffer, at + 9, 2)
    hour = _digits(buffer, at + 12, 2)
    minute = _digits(buffer, at + 15, 2)
    second = _digits(buffer, at + 18, 2)
    if not (0 <= year < _YEAR_STARTS.size and 1 <= month <= 12):
        return -1, 0  # a non-digit made one of them negative
    leap = _LEAP[year] and month == 2
    if not (1 <= day <= _MONTH_DAYS[month] + leap and 0 <= hour <= 23):
        return -1, 0
    if not (0 <= minute <= 59 and 0 <= second <= 59):
        return -1, 0
    days = _YEAR_STARTS[year] + _MONTH_STARTS[month] + (_LEAP[year] and month > 2) + day - 1
    return end, days * 86400 + hour * 3600 + minute * 60 + second


@compiled(inline="always")
def _digits(buffer, at, count):
    """The number the `count` digits at `at` write; negative if one is not a digit."""
    value = 0
    for k in range(at, at + count):
        digit = np.int64(_byte(buffer, k)) - 48
        if digit < 0 or digit > 9:
            return -1000000
        value = value * 10 + digit
    return value


# Days from 1970-01-01 to each year's first day, leap years (by year - FIRST_YEAR), and
# each month's length and first day in a common year: no division per stamp.
FIRST_YEAR = 1970
_YEARS = np.arange(FIRST_YEAR, 2100)  # serving.readings refuses other years too
_LEAP = (_YEARS % 4 == 0) & ((_YEARS % 100 != 0) | (_YEARS % 400 == 0))
_YEAR_STARTS = np.cumsum(365 + _LEAP) - (365 + _LEAP)
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_MONTH_STARTS = np.cumsum(_MONTH_DAYS) - _MONTH_DAYS


@compiled(inline="always")
def _json_number(buffer, at):
    """(index after, value) of the JSON number at `at`; index -1 if it is not one, or not
    exact by the fast path."""
    size = buffer.size
    negative = at < size and _byte(buffer, at) == 45  # -
    if negative:
        at += 1
    if at >= size or not 48 <= _byte(buffer, at) <= 57:
        return -1, 0.0
    mantissa = 0
    digits = 0  # significant digits in the mantissa
    exponent = 0
    if _byte(buffer, at) == 48:  # a leading 0 is alone
        at += 1
    else:
        while at < size and 48 <= _byte(buffer, at) <= 57:
            if digits == 18:
                return -1, 0.0
            mantissa = mantissa * 10 + _byte(buffer, at) - 48
            digits += 1
            at += 1
    fraction = at < size and _byte(buffer, at) == 46  # .
    if fraction:
        at += 1
        if at >= size or not 48 <= _byte(buffer, at) <= 57:
            return -1, 0.0
        while at < size and 48 <= _byte(buffer, at) <= 57:
            if digits == 18:
                return -1, 0.0
            mantissa = mantissa * 10 + _byte(buffer, at) - 48
            if mantissa:
                digits += 1
            exponent -= 1
            at += 1
    scientific = at < size and (_byte(buffer, at) == 101 or _byte(buffer, at) == 69)  # e E
    if scientific:
        at += 1
        sign = 1
        if at < size and (_byte(buffer, at) == 43 or _byte(buffer, at) == 45):
            sign = -1 if _byte(buffer, at) == 45 else 1
            at += 1
        if at >= size or not 48 <= _byte(buffer, at) <= 57:
            return -1, 0.0
        power = 0
        while at < size and 48 <= _byte(buffer, at) <= 57:
            power = min(power * 10 + _byte(buffer, at) - 48, 1000)
            at += 1
        exponent += sign * power
    value = 0.0
    if mantissa:
        if mantissa > 9007199254740992 or not -22 <= exponent <= 22:
            return -1, 0.0
        value = float(mantissa)
        if exponent > 0:
            value *= _POWERS_OF_TEN[exponent]
        elif exponent < 0:
            value /= _POWERS_OF_TEN[-exponent]
    # An integer literal is read as an int first: "-0" is 0, where "-0.0" is -0.0.
    return at, -value if negative and (mantissa or fraction or scientific) else value


_POWERS_OF_TEN = np.array([10.0**k for k in range(23)])  # each exact in float64
