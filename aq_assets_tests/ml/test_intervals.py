"""`aq_assets.ml.intervals`: calibrated quantiles and exceedance probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd

from aq_assets.ml.intervals import QUANTILES, Intervals, effective_size


def _pairs(rows: int, seed: int, spread: np.ndarray | float = 0.3):
    """Forecasts of two horizons and what happened: log-normal errors of `spread`."""
    rng = np.random.default_rng(seed)
    forecast = rng.uniform(5, 60, size=(rows, 2))
    truth = forecast * np.exp(rng.normal(0, 1, size=(rows, 2)) * np.reshape(spread, (-1, 1)))
    return forecast, truth


def test_intervals_cover_fresh_errors_of_the_same_kind():
    forecast, truth = _pairs(4000, seed=1)
    intervals = Intervals.calibrate(forecast, truth)
    assert intervals is not None

    fresh, happened = _pairs(4000, seed=2)
    quantiles = intervals.quantiles(fresh)
    inside = (happened >= quantiles[..., QUANTILES.index(0.1)]) & (
        happened <= quantiles[..., QUANTILES.index(0.9)]
    )
    assert abs(inside.mean() - 0.8) < 0.03
    # The 0.9 quantile is where the chance of exceeding is 0.1.
    at = quantiles[0, 0, QUANTILES.index(0.9)]
    assert abs(intervals.exceedance(fresh[:1], [at])[0, 0, 0] - 0.1) < 0.01


def test_intervals_widen_with_recent_variability():
    """Scores are scaled by std_24 / (mean_24 + c): an unsettled hour's interval is wider
    than a calm one's at the same forecast, and both cover about as they should."""
    rows = 4000
    rng = np.random.default_rng(3)
    variability = rng.choice([0.05, 0.5], size=rows)
    recent = np.column_stack([np.full(rows, 20.0), 20.0 * variability])
    forecast, truth = _pairs(rows, seed=4, spread=0.1 + variability)
    intervals = Intervals.calibrate(forecast, truth, recent)
    assert intervals is not None and intervals.spread is not None

    quantiles = intervals.quantiles(forecast, QUANTILES, recent)
    width = quantiles[..., QUANTILES.index(0.9)] - quantiles[..., QUANTILES.index(0.1)]
    calm, unsettled = variability == 0.05, variability == 0.5
    relative = width / forecast
    assert relative[calm].mean() < 0.7 * relative[unsettled].mean()
    # Without the rows' variability: a typical width, neither the calm nor the unsettled one.
    typical = intervals.quantiles(forecast, QUANTILES)
    assert np.isfinite(typical).all()


def test_effective_size_counts_days_when_a_day_shares_its_error():
    rng = np.random.default_rng(5)
    days = np.repeat(np.arange(20), 24)
    shared = np.repeat(rng.normal(size=20), 24) + rng.normal(scale=1e-3, size=days.size)
    independent = rng.normal(size=days.size)

    assert effective_size(shared, days) < 40
    assert effective_size(independent, days) > 200
    assert effective_size(independent, None) == days.size


def test_few_independent_days_widen_the_intervals():
    """Errors one day shares are worth one score a day: the finite-sample correction for
    20 scores reads the 0.9 quantile near the 0.92 of the scores, farther out than for 480."""
    rng = np.random.default_rng(6)
    days = np.repeat(np.arange(20), 24)
    forecast = np.full((days.size, 1), 20.0)
    truth = forecast * np.exp(np.repeat(rng.normal(0, 0.3, 20), 24))[:, None]

    by_day = Intervals.calibrate(forecast, truth, days=days)
    as_rows = Intervals.calibrate(forecast, truth)
    assert by_day is not None and as_rows is not None
    wide, narrow = by_day.quantiles(forecast[:1])[0, 0], as_rows.quantiles(forecast[:1])[0, 0]
    assert wide[-1] > narrow[-1] and wide[0] < narrow[0]


def test_intervals_round_trip_and_unscaled_ones_still_load():
    forecast, truth = _pairs(1000, seed=7)
    recent = np.column_stack([np.full(1000, 30.0), np.linspace(1, 10, 1000)])
    intervals = Intervals.calibrate(forecast, truth, recent, np.repeat(np.arange(10), 100))
    assert intervals is not None

    again = Intervals.from_dict(intervals.to_dict())
    np.testing.assert_array_equal(
        again.quantiles(forecast, QUANTILES, recent),
        intervals.quantiles(forecast, QUANTILES, recent),
    )
    state = intervals.to_dict()
    del state["spread"]  # as saved by format 4
    unscaled = Intervals.from_dict(state)
    assert unscaled.spread is None
    assert np.isfinite(unscaled.quantiles(forecast)).all()
    assert not pd.isna(unscaled.exceedance(forecast, [35.4])).any()
