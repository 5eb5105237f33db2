"""Forecast distributions: quantiles and the chance of exceeding a threshold, from the point
forecaster's errors on days its boosters did not learn from (split-conformal residuals).

Errors are taken on a log scale, `log(y + c) - log(ŷ + c)` with `c` the typical level of the
calibration days: pollution's errors grow with its level, and relative errors are nearly
alike across levels. What remains is absorbed by banding the calibration rows by forecast
level (up to four bands, each with at least `MIN_BAND_ROWS` rows) and keeping each band's
error distribution whole (201 quantiles), so that any quantile and any threshold's exceedance
probability are read from one table, consistently: the 0.9 quantile lies at the threshold
whose exceedance probability is 0.1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

QUANTILES = (0.05, 0.1, 0.5, 0.9, 0.95)
# The central intervals the quantiles bound, by nominal coverage.
INTERVALS = {80: (0.1, 0.9), 90: (0.05, 0.95)}
MIN_BAND_ROWS = 250
MAX_BANDS = 4
_GRID = np.linspace(0.0, 1.0, 201)  # the probabilities each band's error quantiles sit at


@dataclass(frozen=True)
class Intervals:
    """Per horizon: the forecast-level edges between bands, and each band's error quantiles
    (bands × len(_GRID), log scale)."""

    offset: float
    edges: tuple[np.ndarray, ...]
    errors: tuple[np.ndarray, ...]

    @classmethod
    def calibrate(cls, forecast: np.ndarray, truth: np.ndarray) -> Intervals | None:
        """From point forecasts and what happened (rows × horizons) on days the point model
        did not learn from; None when a horizon has fewer than MIN_BAND_ROWS known pairs."""
        known = np.isfinite(forecast) & np.isfinite(truth)
        if forecast.size == 0 or (known.sum(axis=0) < MIN_BAND_ROWS).any():
            return None
        offset = float(max(np.median(np.maximum(truth[known], 0.0)), 1e-6))
        edges, errors = [], []
        for j in range(forecast.shape[1]):
            level = np.maximum(forecast[known[:, j], j], 0.0)
            error = np.log(np.maximum(truth[known[:, j], j], 0.0) + offset) - np.log(level + offset)
            bands = int(min(MAX_BANDS, max(1, level.size // MIN_BAND_ROWS)))
            cuts = np.quantile(level, np.arange(1, bands) / bands)
            band = np.searchsorted(cuts, level, side="right")
            edges.append(cuts)
            errors.append(np.vstack([np.quantile(error[band == b], _GRID) for b in range(bands)]))
        return cls(offset, tuple(edges), tuple(errors))

    def quantiles(self, forecast: np.ndarray, levels: Sequence[float] = QUANTILES) -> np.ndarray:
        """rows × horizons × levels: the forecast quantiles (NaN where the forecast is)."""
        out = np.full((*forecast.shape, len(levels)), np.nan)
        for j, band, rows, base in self._bands(forecast):
            shifts = np.interp(levels, _GRID, self.errors[j][band])
            out[rows, j, :] = np.exp(base[:, None] + shifts[None, :]) - self.offset
        return np.maximum(out, 0.0)

    def exceedance(self, forecast: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
        """rows × horizons × thresholds: the probability that the hour's value exceeds each
        threshold (NaN where the forecast is)."""
        out = np.full((*forecast.shape, len(thresholds)), np.nan)
        logs = np.log(np.maximum(np.asarray(thresholds, dtype=np.float64), 0.0) + self.offset)
        for j, band, rows, base in self._bands(forecast):
            gaps = logs[None, :] - base[:, None]
            below = np.interp(gaps.ravel(), self.errors[j][band], _GRID, left=0.0, right=1.0)
            out[rows, j, :] = 1.0 - below.reshape(gaps.shape)
        return out

    def _bands(self, forecast: np.ndarray):
        """(horizon, band, the rows in it, their log forecast) for every known forecast."""
        for j in range(forecast.shape[1]):
            column = forecast[:, j]
            known = np.flatnonzero(np.isfinite(column))
            level = np.maximum(column[known], 0.0)
            band = np.searchsorted(self.edges[j], level, side="right")
            for b in np.unique(band):
                inside = band == b
                yield j, int(b), known[inside], np.log(level[inside] + self.offset)

    def to_dict(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "edges": [e.tolist() for e in self.edges],
            "errors": [e.tolist() for e in self.errors],
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Intervals:
        return cls(
            float(state["offset"]),
            tuple(np.asarray(e, dtype=np.float64) for e in state["edges"]),
            tuple(np.asarray(e, dtype=np.float64).reshape(-1, _GRID.size) for e in state["errors"]),
        )


def interval_scores(
    intervals: Intervals, forecast: np.ndarray, truth: np.ndarray
) -> dict[str, np.ndarray]:
    """Per row and horizon (NaN where the forecast or the truth is unknown): whether each
    central interval covers the truth (`covered80`, `covered90`: 1 or 0), its width, and the
    pinball loss averaged over QUANTILES."""
    quantiles = intervals.quantiles(forecast)
    known = np.isfinite(forecast) & np.isfinite(truth)
    scores = {}
    for nominal, (low, high) in INTERVALS.items():
        lower = quantiles[:, :, QUANTILES.index(low)]
        upper = quantiles[:, :, QUANTILES.index(high)]
        scores[f"covered{nominal}"] = np.where(known, (truth >= lower) & (truth <= upper), np.nan)
        scores[f"width{nominal}"] = np.where(known, upper - lower, np.nan)
    gaps = truth[:, :, None] - quantiles
    levels = np.asarray(QUANTILES)
    pinball = np.maximum(levels * gaps, (levels - 1) * gaps).mean(axis=2)
    scores["pinball"] = np.where(known, pinball, np.nan)
    return scores
