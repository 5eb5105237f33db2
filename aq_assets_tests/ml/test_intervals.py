"""Forecast intervals from calibration errors: they cover what they say on data like the
calibration days, their quantiles and exceedance probabilities agree, and they survive a
save."""

from __future__ import annotations

import numpy as np
import pytest

from aq_assets.ml.intervals import INTERVALS, MIN_BAND_ROWS, QUANTILES, Intervals


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
    forecast, truth = forecasts_and_truth(rng, MIN_BAND_ROWS + 20)
    truth[:40, 1] = np.nan  # one horizon below the minimum

    assert Intervals.calibrate(forecast, truth) is None


def test_intervals_survive_a_round_trip_through_json():
    import json

    rng = np.random.default_rng(11)
    intervals = Intervals.calibrate(*forecasts_and_truth(rng, 3000))
    assert intervals is not None
    again = Intervals.from_dict(json.loads(json.dumps(intervals.to_dict())))
    forecast = rng.lognormal(np.log(20), 1.0, (50, 2))

    np.testing.assert_array_equal(again.quantiles(forecast), intervals.quantiles(forecast))
    np.testing.assert_array_equal(
        again.exceedance(forecast, [15.0]), intervals.exceedance(forecast, [15.0])
    )


@pytest.mark.parametrize("bands", [1, 2, 4])
def test_calibration_rows_are_banded_by_level(bands):
    rng = np.random.default_rng(12)
    forecast, truth = forecasts_and_truth(rng, bands * MIN_BAND_ROWS + 10)

    intervals = Intervals.calibrate(forecast, truth)

    assert intervals is not None
    assert [e.shape[0] for e in intervals.errors] == [bands, bands]
    assert [len(e) for e in intervals.edges] == [bands - 1, bands - 1]
