"""Forecast intervals from calibration errors: they cover what they say on data like the
calibration days, their quantiles and exceedance probabilities agree, and they survive a
save."""

from __future__ import annotations

import numpy as np
import pandas as pd

from aq_assets.ml.intervals import (
    INTERVALS,
    MIN_CALIBRATION_ROWS,
    QUANTILES,
    Intervals,
    effective_size,
)


def forecasts_and_truth(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two horizons; errors multiplicative, wider further ahead, like pollution's."""
    forecast = rng.lognormal(np.log(20), 0.7, (n, 2))
    truth = forecast * rng.lognormal(0, [0.2, 0.5], (n, 2))
    return forecast, truth


def test_intervals_cover_their_nominal_share_of_new_outcomes():
    rng = np.random.default_rng(7)
    intervals = Intervals.calibrate(*forecasts_and_truth(rng, 4000))
    assert intervals is not None
    forecast, truth = forecasts_and_truth(rng, 20_000)

    quantiles = intervals.quantiles(forecast)

    for nominal, (low, high) in INTERVALS.items():
        lower = quantiles[:, :, QUANTILES.index(low)]
        upper = quantiles[:, :, QUANTILES.index(high)]
        coverage = ((truth >= lower) & (truth <= upper)).mean(axis=0)
        assert (np.abs(coverage - nominal / 100) < 0.02).all(), (nominal, coverage)
    widths = (quantiles[:, :, -1] - quantiles[:, :, 0]).mean(axis=0)
    assert widths[1] > 2 * widths[0]  # the noisier horizon gets the wider interval


def test_quantiles_are_ordered_and_exceedance_agrees_with_them():
    rng = np.random.default_rng(8)
    intervals = Intervals.calibrate(*forecasts_and_truth(rng, 3000))
    assert intervals is not None
    forecast = np.array([[5.0, 5.0], [40.0, 40.0], [150.0, 150.0]])

    quantiles = intervals.quantiles(forecast)
    for j in range(2):
        q90 = quantiles[:, j, QUANTILES.index(0.9)]
        above = np.array(
            [intervals.exceedance(forecast[i : i + 1], [q90[i]])[0, j, 0] for i in range(3)]
        )
        np.testing.assert_allclose(above, 0.1, atol=0.006)  # the grid's step
    assert (np.diff(quantiles, axis=2) >= 0).all()
    chances = intervals.exceedance(forecast, [15.0, 35.4, 1000.0])
    assert (np.diff(chances, axis=2) <= 0).all()  # a higher threshold is never likelier
    assert (chances[:, :, 2] < 0.01).all() and (chances[:, 0, 0] == np.sort(chances[:, 0, 0])).all()


def test_an_unknown_forecast_has_no_interval():
    rng = np.random.default_rng(9)
    intervals = Intervals.calibrate(*forecasts_and_truth(rng, 2000))
    assert intervals is not None

    forecast = np.array([[np.nan, 10.0]])

    assert np.isnan(intervals.quantiles(forecast)[0, 0]).all()
    assert np.isfinite(intervals.quantiles(forecast)[0, 1]).all()
    assert np.isnan(intervals.exceedance(forecast, [15.0])[0, 0]).all()


def test_too_few_calibration_rows_give_no_intervals():
    rng = np.random.default_rng(10)
    forecast, truth = forecasts_and_truth(rng, MIN_CALIBRATION_ROWS + 20)
    truth[:40, 1] = np.nan  # one horizon below the minimum

    assert Intervals.calibrate(forecast, truth) is None


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


def test_a_format_4_table_banded_by_level_reads_each_forecasts_own_band():
    """Format 4 saved up to four tables per horizon, by forecast level; they still load."""
    narrow, wide = np.linspace(-0.1, 0.1, 201), np.linspace(-1.0, 1.0, 201)
    state = {"offset": 10.0, "edges": [[20.0]], "errors": [np.vstack([narrow, wide]).tolist()]}
    intervals = Intervals.from_dict(state)  # no "spread": unscaled, as format 4
    forecast = np.array([[15.0], [25.0]])  # one below the edge, one above

    quantiles = intervals.quantiles(forecast)
    chances = intervals.exceedance(forecast, [30.0])

    log_widths = np.log(quantiles[:, 0, -1] + 10) - np.log(quantiles[:, 0, 0] + 10)
    np.testing.assert_allclose(log_widths, [0.18, 1.8])  # each row's own table, 5%-95%
    assert chances[0, 0, 0] == 0.0 and 0.0 < chances[1, 0, 0] < 0.5
