"""The loops of cleaning and features, compiled by numba: cleaning a batch of series and
building the feature row at each origin, for one origin (a request) or every hour of every
sensor (training) alike.

A request holds a few thousand readings; array operations on them cost ~1-3 µs each
whatever their size, and the online path needed a few hundred of them. These loops do the
arithmetic in one call each, in a fixed order (no fast-math, sums left to right), so the same
input gives the same bits in training, batch predictions and the service.
`aq_assets_tests/ml/test_cleaning.py` and `test_features.py` hold them equal to the
whole-frame pandas reference (`aq_assets_tests/oracle.py`).

Importing this module imports numba (~0.4 s). Each function compiles on its first call and
keeps the machine code in numba's cache (`__pycache__` beside this file, or ~/.cache/numba,
or NUMBA_CACHE_DIR), where the next process loads it in a fraction of a second; the service
compiles them before it says it is ready. The code location never imports this module.
"""

from __future__ import annotations

import numba
import numpy as np

from aq_assets.ml.cleaning import SENTINELS, SPIKE_RATIO

# The windows of clean_readings' isolated-spike rule.
SPIKE_DAY_HOURS = 24
SPIKE_MIN_READINGS = 6
SPIKE_RECENT_HOURS = 3
MAX_24_MIN_PERIODS = 8  # build_features' max_24 needs 8 readings in the last 24 hours


def compiled(function=None, **options):
    """`function` compiled without the GIL, its machine code cached on disk where numba finds
    a writable place (else compiled again in every process)."""
    if function is None:
        return lambda f: compiled(f, **options)
    try:
        return numba.njit(nogil=True, cache=True, **options)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True, **options)(function)


# An index known not to be negative: numba checks a signed one on every access (and adds the
# size if negative), which cost the cleaning loop ~25% of its time.
_u = np.uint64

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


@compiled
def clean_series(values, hours, low, high, tolerance, per_series, offsets, excess):
    """`cleaning.clean_many` on series laid end to end (series g is offsets[g]:offsets[g+1],
    its readings in order of hour; low, high and tolerance per series if `per_series`, else
    per reading, NaN where the range is unknown; excess per series, NaN: no spike rule). Returns hours, hourly values, their
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
            v = values[_u(j)]
            r = _u(g if per_series else j)
            sentinel = False
            for placeholder in SENTINELS:
                sentinel |= v == placeholder
            if v != v:
                counts[g, 0] += 1
            elif sentinel:
                counts[g, 1] += 1
            elif v > high[r] or v < low[r] - tolerance[r]:
                counts[g, 2] += 1
            else:
                counts[g, 3] += v < low[r]
                kept_hours[_u(n)] = hours[_u(j)]
                kept[_u(n)] = low[r] if v < low[r] else v
                n += 1
        start = at
        at += _hour_means_into(kept_hours[:n], kept[:n], out_hours[at:], out_values[at:])
        counts[g, 4] = n - (at - start)
        end = start + _drop_isolated_spikes(out_hours[start:at], out_values[start:at], excess[g])
        counts[g, 5] = at - end
        at = end
        out_offsets[g + 1] = at
    return out_hours[:at], out_values[:at], out_offsets, counts


@compiled
def hour_means(hours, values):
    """Sorted `hours` with repeats -> each hour once, with the mean of its values."""
    out_hours = np.empty_like(hours)
    out_values = np.empty_like(values)
    n = _hour_means_into(hours, values, out_hours, out_values)
    return out_hours[:n], out_values[:n]


@compiled
def _hour_means_into(hours, values, out_hours, out_values):
    """One value per hour into out_*: the mean of its readings, summed in row order with
    the compensated sum pandas' groupby mean uses. Returns how many hours."""
    at = 0
    j = 0
    while j < hours.size:
        end = j + 1
        while end < hours.size and hours[_u(end)] == hours[_u(j)]:
            end += 1
        out_hours[_u(at)] = hours[_u(j)]
        out_values[_u(at)] = values[_u(j)] if end == j + 1 else _kahan_mean(values[j:end])
        at += 1
        j = end
    return at


@compiled
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


@compiled
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


@compiled
def _window_start(hours, r, window_hours):
    """The first reading pandas' `shift(1).rolling(f"{window_hours}h")` sees at reading r:
    those of the hours in (t - window, t], shifted by one reading, never before the first."""
    start = r
    while start > 0 and hours[start - 1] > hours[r] - window_hours:
        start -= 1
    return max(start - 1, 0)


@compiled
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


@compiled
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
    covariate_change_1_columns,
    relative_columns,
    network_column,
    relative_offset,
):
    """Fill `rows` (NaN, n × features) with the feature row at each origin, and `valid`
    (see `features.origin_feature_rows`). fixed_columns: hours_since_reading, level, max_24,
    change_1, change_3, change_24. Series are laid end to end and shared by origins: the
    target readings of origin i are target_starts[i]:target_ends[i] (none after the
    origin; its sensor's first reading is at first_hours[i]), those of its co-located
    parameter p covariate_starts[i * P + p]:covariate_ends[i * P + p]; its change over the
    last hour goes to covariate_change_1_columns[p] where that is not -1. relative_columns:
    level_to_network_log and network_minus_level (-1: not in the spec), from the level and
    the column network_column (network_now)."""
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
            if covariate_change_1_columns[p] >= 0:
                previous, _ = _latest(c, span - 1, covariate_fill_hours)
                rows[i, covariate_change_1_columns[p]] = current - previous
        if relative_columns[0] >= 0:
            network = rows[i, network_column]
            rows[i, relative_columns[0]] = np.log(
                (_not_below_zero(level) + relative_offset)
                / (_not_below_zero(network) + relative_offset)
            )
            rows[i, relative_columns[1]] = network - level


@compiled
def _not_below_zero(value):
    """0 for a negative value, NaN for NaN (as np.maximum(value, 0))."""
    return 0.0 if value < 0.0 else value


@compiled
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
        out[_u(hours[j] - first)] = values[j]
        j -= 1


@compiled
def _latest(values, at, limit):
    """values[at], or the latest value at most `limit` steps before it (a limited ffill),
    and how many steps back it was; NaN where there is none."""
    for k in range(min(limit, at) + 1):
        if values[at - k] == values[at - k]:
            return values[at - k], float(k)
    return np.nan, np.nan


@compiled
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
        v = y[_u(positions[k])]
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
        v = y[_u(positions[k])]
        deviation = v - mean if v == v else 0.0
        squares = deviation * deviation if k == 0 else squares + deviation * deviation
    return mean, np.sqrt(squares / (count - 1))
