"""The loops of the online forecast path, compiled by numba: reading a request's timestamps,
cleaning its readings, building the feature row at each origin, and walking the
forecaster's trees.

A request holds a few thousand readings; array operations on them cost ~1-3 µs each
whatever their size, and the online path needed a few hundred of them. These loops do the
same arithmetic, in the same order, in one call each: same inputs, same bits (no fast-math,
sums left to right as `cumsum` takes them). `online.py` prepares their inputs and says what
each rule means; `aq_assets_tests/test_online_features_vector.py` proves them against the
pandas batch path.

Importing this module imports numba (~0.4 s). Each function compiles on its first call,
~7 s for all of them on 2 cores, and keeps the machine code in numba's cache (`__pycache__`
beside this file, or ~/.cache/numba, or NUMBA_CACHE_DIR), where the next process loads it
in a fraction of a second; the service compiles them before it says it is ready. The code
location never imports this module.
"""

from __future__ import annotations

import numba
import numpy as np

from aq_assets.ml.cleaning import SENTINELS, SPIKE_RATIO
from aq_assets.ml.trees import MAX_CATEGORY, NUMERIC_MISSING_RIGHT

# The windows of clean_readings' isolated-spike rule.
SPIKE_DAY_HOURS = 24
SPIKE_MIN_READINGS = 6
SPIKE_RECENT_HOURS = 3
MAX_24_MIN_PERIODS = 8  # build_features' max_24 needs 8 readings in the last 24 hours


def _compiled(function=None, **options):
    """`function` compiled without the GIL, its machine code cached on disk where numba finds
    a writable place (else compiled again in every process)."""
    if function is None:
        return lambda f: _compiled(f, **options)
    try:
        return numba.njit(nogil=True, cache=True, **options)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True, **options)(function)


# ---------------------------------------------------------------------------------------------
# A request's lists of readings, from their JSON text


@_compiled
def read_numbers(buffer, limit, out, counts):
    """JSON arrays of numbers and null laid end to end (`[1.5,null] [2e3]`, valid JSON as
    msgspec checked it) into `out` (NaN for null, at least len(buffer) // 2 + 1 long), and
    the length of each array into `counts`. False at anything else, at a number over `limit`
    in size, or one that is not exactly a float by one multiplication or division (more
    than 2^53 in its digits, or a power of ten beyond 22): the general path decides those.
    Exact where it answers: the one IEEE operation on exact operands rounds correctly
    (Clinger's fast path), as every correct float reader must."""
    return _read_arrays(buffer, _NUMBERS, limit, out, counts)


@_compiled
def read_utc_stamps(buffer, out, counts):
    """JSON arrays of "YYYY-MM-DDTHH:MM:SS" or "...Z" stamps laid end to end into `out`
    (Unix seconds) and the length of each array into `counts`. False at anything else, or
    a time not between 1970 and 2100."""
    return _read_arrays(buffer, _STAMPS, 2.0**62, out, counts)


_NUMBERS, _STAMPS = 0, 1  # the items `_read_arrays` reads (numba caches no function passed)


@_compiled
def _read_arrays(buffer, items, limit, out, counts):
    """The walk both readers share; `_item` reads one item."""
    size = buffer.size
    at = 0
    n = 0
    for k in range(counts.size):
        at = _skip_space(buffer, at)
        if at >= size or buffer[at] != 91:  # [
            return False
        at = _skip_space(buffer, at + 1)
        first = n
        if at < size and buffer[at] == 93:  # ]: empty
            at += 1
        else:
            while True:
                at, value = _item(buffer, at, items)
                if at < 0 or not abs(value) <= limit:
                    return False
                out[n] = value
                n += 1
                at = _skip_space(buffer, at)
                if at >= size:
                    return False
                if buffer[at] == 93:  # ]
                    at += 1
                    break
                if buffer[at] != 44:  # ,
                    return False
                at = _skip_space(buffer, at + 1)
        counts[k] = n - first
    return _skip_space(buffer, at) == size


@_compiled(inline="always")
def _skip_space(buffer, at):
    while at < buffer.size and (
        buffer[at] == 32 or buffer[at] == 10 or buffer[at] == 13 or buffer[at] == 9
    ):
        at += 1
    return at


@_compiled(inline="always")
def _item(buffer, at, items):
    """(index after, value) of the item at `at`; index -1 if it is not one of `items`."""
    if items == _STAMPS:
        end, seconds = _utc_stamp(buffer, at)
        return end, float(seconds)  # exact: under 2^53
    if at + 4 <= buffer.size and buffer[at] == 110:  # null (msgspec checked the JSON)
        return at + 4, np.nan
    return _json_number(buffer, at)


@_compiled(inline="always")
def _utc_stamp(buffer, at):
    """(index after, Unix seconds) of the stamp at `at`; index -1 if it is not one."""
    end = at + 21  # "YYYY-MM-DDTHH:MM:SS" with its quotes
    if end + 1 > buffer.size:
        return -1, 0
    if buffer[end - 1] == 90:  # Z
        end += 1
    if (
        buffer[at] != 34  # "
        or buffer[end - 1] != 34
        or buffer[at + 5] != 45  # -
        or buffer[at + 8] != 45
        or buffer[at + 11] != 84  # T
        or buffer[at + 14] != 58  # :
        or buffer[at + 17] != 58
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


@_compiled(inline="always")
def _digits(buffer, at, count):
    """The number the `count` digits at `at` write; negative if one is not a digit."""
    value = 0
    for k in range(at, at + count):
        digit = np.int64(buffer[k]) - 48
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


@_compiled(inline="always")
def _json_number(buffer, at):
    """(index after, value) of the JSON number at `at`; index -1 if it is not one, or not
    exact by the fast path."""
    size = buffer.size
    negative = at < size and buffer[at] == 45  # -
    if negative:
        at += 1
    if at >= size or not 48 <= buffer[at] <= 57:
        return -1, 0.0
    mantissa = 0
    digits = 0  # significant digits in the mantissa
    exponent = 0
    if buffer[at] == 48:  # a leading 0 is alone
        at += 1
    else:
        while at < size and 48 <= buffer[at] <= 57:
            if digits == 18:
                return -1, 0.0
            mantissa = mantissa * 10 + buffer[at] - 48
            digits += 1
            at += 1
    fraction = at < size and buffer[at] == 46  # .
    if fraction:
        at += 1
        if at >= size or not 48 <= buffer[at] <= 57:
            return -1, 0.0
        while at < size and 48 <= buffer[at] <= 57:
            if digits == 18:
                return -1, 0.0
            mantissa = mantissa * 10 + buffer[at] - 48
            if mantissa:
                digits += 1
            exponent -= 1
            at += 1
    scientific = at < size and (buffer[at] == 101 or buffer[at] == 69)  # e E
    if scientific:
        at += 1
        sign = 1
        if at < size and (buffer[at] == 43 or buffer[at] == 45):
            sign = -1 if buffer[at] == 45 else 1
            at += 1
        if at >= size or not 48 <= buffer[at] <= 57:
            return -1, 0.0
        power = 0
        while at < size and 48 <= buffer[at] <= 57:
            power = min(power * 10 + buffer[at] - 48, 1000)
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


# ---------------------------------------------------------------------------------------------
# Trees


@_compiled
def tree_outputs(x, nodes, leaves, offsets, words, outputs, base):
    """`trees.TreeEnsemble.predict`: each output's base score plus its trees' leaves, summed
    tree by tree, in order, as XGBoost sums them."""
    n = x.shape[0]
    n_trees, n_splits = nodes.shape
    depth = np.int64(np.log2(n_splits + 1))
    out = np.empty((n, base.shape[0]), dtype=np.float32)
    for i in range(n):
        for j in range(base.shape[0]):
            out[i, j] = base[j]
    if n < 8:  # a few rows: each walks down on its own
        for t in range(n_trees):
            for i in range(n):
                node = 0
                for _ in range(depth):
                    here = nodes[t, node]
                    node = 2 * node + 1 + _goes_right(x[i, here.feature], here, offsets, words)
                out[i, outputs[t]] += leaves[t, node - n_splits]
        return out
    # Many rows: all go down a tree level by level, independent walks the CPU overlaps.
    at = np.empty(n, dtype=np.int64)
    for t in range(n_trees):
        at[:] = 0
        for _ in range(depth):
            for i in range(n):
                here = nodes[t, at[i]]
                at[i] = 2 * at[i] + 1 + _goes_right(x[i, here.feature], here, offsets, words)
        for i in range(n):
            out[i, outputs[t]] += leaves[t, at[i] - n_splits]
    return out


@_compiled(inline="always")
def _goes_right(v, here, offsets, words):
    """1 where XGBoost sends the value right: a number not below the split value, a missing
    value where the split says, a valid category of the split's set."""
    split = here.split
    if split < 0:  # numeric: without branches on the value, often mispredicted
        missing = v != v
        return np.int64(
            (missing & (split == NUMERIC_MISSING_RIGHT)) | ((not missing) & (not v < here.value))
        )
    if v != v:
        return np.int64((split & 1) == 0)
    if v >= 0 and v < MAX_CATEGORY:
        k = split >> 1
        c = np.int64(v)
        word = c >> 5
        if word < offsets[k + 1] - offsets[k]:
            return np.int64((words[offsets[k] + word] >> (c & 31)) & 1)
    return np.int64(0)


# ---------------------------------------------------------------------------------------------
# Cleaning


# What `clean_series` counts per series, in its columns' order.
COUNTS = (
    "null_values",
    "sentinels",
    "implausible",
    "negatives_clipped",
    "repeated_hours",
    "spikes",
)


@_compiled
def clean_series(values, hours, low, high, tolerance, offsets, excess):
    """`cleaning.clean_many` on series laid end to end (series g is offsets[g]:offsets[g+1],
    its readings in order of hour; low, high and tolerance per reading, NaN where the range
    is unknown; excess per series, NaN: no spike rule). Returns hours, hourly values, their
    offsets per series, and per series how many readings each rule touched (`COUNTS`)."""
    n_series = offsets.size - 1
    out_hours = np.empty(values.size, dtype=np.int64)
    out_values = np.empty(values.size, dtype=np.float64)
    out_offsets = np.zeros(n_series + 1, dtype=np.int64)
    counts = np.zeros((n_series, len(COUNTS)), dtype=np.int64)
    kept_hours = np.empty(values.size, dtype=np.int64)
    kept = np.empty(values.size, dtype=np.float64)
    at = 0
    for g in range(n_series):
        # Nulls, sentinels and implausible values dropped; small negatives raised to `low`.
        n = 0
        for j in range(offsets[g], offsets[g + 1]):
            v = values[j]
            sentinel = False
            for placeholder in SENTINELS:
                sentinel |= v == placeholder
            if v != v:
                counts[g, 0] += 1
            elif sentinel:
                counts[g, 1] += 1
            elif v > high[j] or v < low[j] - tolerance[j]:
                counts[g, 2] += 1
            else:
                counts[g, 3] += v < low[j]
                kept_hours[n] = hours[j]
                kept[n] = low[j] if v < low[j] else v
                n += 1
        start = at
        at += _hour_means_into(kept_hours[:n], kept[:n], out_hours[at:], out_values[at:])
        counts[g, 4] = n - (at - start)
        end = start + _drop_isolated_spikes(out_hours[start:at], out_values[start:at], excess[g])
        counts[g, 5] = at - end
        at = end
        out_offsets[g + 1] = at
    return out_hours[:at], out_values[:at], out_offsets, counts


@_compiled
def hour_means(hours, values):
    """Sorted `hours` with repeats -> each hour once, with the mean of its values."""
    out_hours = np.empty_like(hours)
    out_values = np.empty_like(values)
    n = _hour_means_into(hours, values, out_hours, out_values)
    return out_hours[:n], out_values[:n]


@_compiled
def _hour_means_into(hours, values, out_hours, out_values):
    """One value per hour into out_*: the mean of its readings, summed in row order with
    the compensated sum pandas' groupby mean uses. Returns how many hours."""
    at = 0
    j = 0
    while j < hours.size:
        end = j + 1
        while end < hours.size and hours[end] == hours[j]:
            end += 1
        out_hours[at] = hours[j]
        out_values[at] = values[j] if end == j + 1 else _kahan_mean(values[j:end])
        at += 1
        j = end
    return at


@_compiled
def _kahan_mean(values):
    total = 0.0
    compensation = 0.0
    for value in values:
        y = value - compensation
        t = total + y
        compensation = (t - total) - y
        if compensation != compensation:  # an infinite value: keep it, as pandas does
            compensation = 0.0
        total = t
    return total / values.size


@_compiled
def _drop_isolated_spikes(hours, values, excess):
    """clean_readings' isolated spikes: a value over SPIKE_RATIO times its reference and
    over it by `excess`, the reference being the larger of the median of the values before
    it in the last 24 h (at least 6 of them) and the highest in the last 3 h. Both windows
    are pandas time windows over the series shifted by one reading: a window also holds the
    reading just before its first hour. Spikes are judged on the whole series, then removed
    (in place); returns how many values are left."""
    n = values.size
    if n == 0 or excess != excess:
        return n
    lowest = values.min()
    spike = np.zeros(n, dtype=np.bool_)
    for r in range(n):
        value = values[r]
        # Necessary for both tests, and cheap: the reference is at least 1 in the ratio test
        # and at least the lowest value in the excess test.
        if not (value > SPIKE_RATIO and value > excess + lowest):
            continue
        day_start = _window_start(hours, r, SPIKE_DAY_HOURS)
        count = r - day_start
        if count < SPIKE_MIN_READINGS:
            continue
        ordered = _sorted(values[day_start:r])
        upper = ordered[count // 2]
        median = upper if count % 2 == 1 else (upper + ordered[(count - 1) // 2]) / 2
        recent_start = _window_start(hours, r, SPIKE_RECENT_HOURS)
        reference = max(median, values[recent_start:r].max())
        spike[r] = value > SPIKE_RATIO * max(reference, 1.0) and value - reference > excess
    left = 0
    for r in range(n):
        if not spike[r]:
            hours[left] = hours[r]
            values[left] = values[r]
            left += 1
    return left


@_compiled
def _window_start(hours, r, window_hours):
    """The first reading pandas' `shift(1).rolling(f"{window_hours}h")` sees at reading r:
    those of the hours in (t - window, t], shifted by one reading, never before the first."""
    start = r
    while start > 0 and hours[start - 1] > hours[r] - window_hours:
        start -= 1
    return max(start - 1, 0)


@_compiled
def _sorted(values):
    """A sorted copy of a few values (insertion sort: a window holds at most a day)."""
    out = values.copy()
    for i in range(1, out.size):
        v = out[i]
        j = i - 1
        while j >= 0 and out[j] > v:
            out[j + 1] = out[j]
            j -= 1
        out[j + 1] = v
    return out


# ---------------------------------------------------------------------------------------------
# The feature row at an origin


@_compiled
def origin_rows(
    rows,
    valid,
    origins,
    first_hours,
    target_hours,
    target_values,
    target_starts,
    target_ends,
    covariate_hours,
    covariate_values,
    covariate_starts,
    covariate_ends,
    lookback,
    max_fill_hours,
    covariate_fill_hours,
    fixed_columns,
    lag_positions,
    lag_columns,
    window_positions,
    window_min_periods,
    window_columns,
    profile_positions,
    profile_min_periods,
    profile_columns,
    covariate_now_columns,
    covariate_change_columns,
):
    """Fill `rows` (NaN, n × features) with the feature row at each origin, and `valid`
    (see `features.origin_feature_rows`). fixed_columns: hours_since_reading, level, max_24,
    change_1, change_3, change_24. Series are laid end to end and shared by origins: the
    target readings of origin i are target_starts[i]:target_ends[i] (none after the
    origin; its sensor's first reading is at first_hours[i]), those of its co-located
    parameter p covariate_starts[i * P + p]:covariate_ends[i * P + p]."""
    now = lookback  # the origin's index in `y`; y[now + 1] stays missing, the padding
    y = np.empty(lookback + 2)
    span = 3 + covariate_fill_hours
    c = np.empty(span + 1)
    n_covariates = covariate_now_columns.size
    for i in range(origins.size):
        origin = origins[i]
        a, b = target_starts[i], target_ends[i]
        # The sensor's hourly grid starts at its first reading; after the origin: no row.
        start = first_hours[i]
        if origin < start:
            continue
        valid[i] = True
        _dense(y, target_hours[a:b], target_values[a:b], origin - now, start, origin)
        level, since = _latest(y, now, max_fill_hours)
        rows[i, fixed_columns[0]] = since
        rows[i, fixed_columns[1]] = level
        for k in range(lag_positions.size):
            rows[i, lag_columns[k]] = y[lag_positions[k]]
        for w in range(window_columns.size):
            mean, std = _window_stats(y, window_positions[w], window_min_periods[w])
            rows[i, window_columns[w]] = mean
            rows[i, window_columns[w] + 1] = std
        present = 0
        highest = -np.inf
        for k in range(now - 23, now + 1):
            if y[k] == y[k]:
                present += 1
                highest = max(highest, y[k])
        rows[i, fixed_columns[2]] = highest if present >= MAX_24_MIN_PERIODS else np.nan
        rows[i, fixed_columns[3]] = level - y[now - 1]
        rows[i, fixed_columns[4]] = level - y[now - 3]
        rows[i, fixed_columns[5]] = level - y[now - 24]
        for p in range(profile_columns.size):
            mean, _ = _window_stats(y, profile_positions[p], profile_min_periods[p])
            rows[i, profile_columns[p]] = mean
        for p in range(n_covariates):
            ca, cb = covariate_starts[i * n_covariates + p], covariate_ends[i * n_covariates + p]
            if ca == cb:
                continue
            _dense(c, covariate_hours[ca:cb], covariate_values[ca:cb], origin - span, start, origin)
            current, _ = _latest(c, span, covariate_fill_hours)
            before, _ = _latest(c, span - 3, covariate_fill_hours)
            rows[i, covariate_now_columns[p]] = current
            rows[i, covariate_change_columns[p]] = current - before


@_compiled
def _dense(out, hours, values, first, start, last):
    """out[k] = the value at hour first + k, for hours start..last; NaN elsewhere."""
    out[:] = np.nan
    low = max(first, start)
    high = min(first + out.size - 1, last)
    # The series usually ends at the origin: walk back from its end.
    j = hours.size - 1
    while j >= 0 and hours[j] > high:
        j -= 1
    while j >= 0 and hours[j] >= low:
        out[hours[j] - first] = values[j]
        j -= 1


@_compiled
def _latest(values, at, limit):
    """values[at], or the latest value at most `limit` steps before it (a limited ffill),
    and how many steps back it was; NaN where there is none."""
    for k in range(min(limit, at) + 1):
        if values[at - k] == values[at - k]:
            return values[at - k], float(k)
    return np.nan, np.nan


@_compiled
def _window_stats(y, positions, min_periods):
    """pandas' rolling mean and std (ddof 1) of the values of `y` at `positions`, NaN below
    min_periods; a window of one repeated value has exactly that mean and a zero spread.
    Sums run left to right over every position, a missing one adding 0.0, as `cumsum` of
    the padded window does in numpy."""
    count = 0
    total = 0.0
    lowest = np.inf
    highest = -np.inf
    for k in range(positions.size):
        v = y[positions[k]]
        present = v == v
        term = v if present else 0.0
        total = term if k == 0 else total + term
        if present:
            count += 1
            lowest = min(lowest, v)
            highest = max(highest, v)
    if count < min_periods or count == 0:
        return np.nan, np.nan
    constant = lowest == highest
    mean = lowest if constant else total / count
    if count == 1:
        return mean, np.nan
    if constant:
        return mean, 0.0
    squares = 0.0
    for k in range(positions.size):
        v = y[positions[k]]
        deviation = v - mean if v == v else 0.0
        squares = deviation * deviation if k == 0 else squares + deviation * deviation
    return mean, np.sqrt(squares / (count - 1))
