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
from functools import cached_property
from typing import Any

import numpy as np

QUANTILES = (0.05, 0.1, 0.5, 0.9, 0.95)
# The central intervals the quantiles bound, by nominal coverage.
INTERVALS = {80: (0.1, 0.9), 90: (0.05, 0.95)}
MIN_BAND_ROWS = 250
MAX_BANDS = 4
_GRID = np.linspace(0.0, 1.0, 201)  # the probabilities each band's error quantiles sit at


# Wider than any span of log errors (a factor of e^100 is no forecast error).
_STRIDE = 1000.0


@dataclass(frozen=True)
class _Table:
    """Every (horizon, band) cell's errors, one row each, and the same laid end to end on
    one line (each cell shifted by its index × _STRIDE) for a single interpolation."""

    errors: np.ndarray  # cells × len(_GRID)
    first: np.ndarray  # per horizon, the index of its first band's cell
    edges: np.ndarray  # horizons × (MAX_BANDS - 1), padded with +inf
    line: np.ndarray
    probabilities: np.ndarray
    quantile_shifts: np.ndarray  # cells × QUANTILES
    lowest: np.ndarray  # per cell, its smallest and largest error
    highest: np.ndarray

    @classmethod
    def of(cls, edges: tuple[np.ndarray, ...], errors: tuple[np.ndarray, ...]) -> _Table:
        rows = np.vstack(errors)
        padded = np.full((len(edges), MAX_BANDS - 1), np.inf)
        for j, cuts in enumerate(edges):
            padded[j, : cuts.size] = cuts
        first = np.cumsum([0, *(e.shape[0] for e in errors[:-1])])
        line = (rows + (np.arange(rows.shape[0]) * _STRIDE)[:, None]).ravel()
        shifts = np.stack([np.interp(QUANTILES, _GRID, row) for row in rows])
        probabilities = np.tile(_GRID, rows.shape[0])
        return cls(rows, first, padded, line, probabilities, shifts, rows[:, 0], rows[:, -1])


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
        return self._quantiles(*self._cells(forecast), levels)

    def exceedance(self, forecast: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
        """rows × horizons × thresholds: the probability that the hour's value exceeds each
        threshold (NaN where the forecast is)."""
        return self._exceedance(*self._cells(forecast), thresholds)

    def both(
        self, forecast: np.ndarray, thresholds: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """`quantiles` at QUANTILES and `exceedance`, finding each forecast's cell once."""
        cell, base = self._cells(forecast)
        return self._quantiles(cell, base, QUANTILES), self._exceedance(cell, base, thresholds)

    def _quantiles(self, cell: np.ndarray, base: np.ndarray, levels: Sequence[float]) -> np.ndarray:
        table = self._table
        shifts = (
            table.quantile_shifts
            if tuple(levels) == QUANTILES
            else np.stack([np.interp(levels, _GRID, row) for row in table.errors])
        )
        return np.maximum(np.exp(base[:, :, None] + shifts[cell]) - self.offset, 0.0)

    def _exceedance(
        self, cell: np.ndarray, base: np.ndarray, thresholds: Sequence[float]
    ) -> np.ndarray:
        table = self._table
        logs = np.log(np.maximum(np.asarray(thresholds, dtype=np.float64), 0.0) + self.offset)
        gaps = logs[None, None, :] - base[:, :, None]
        # One interpolation for every cell: each cell's errors are moved to their own stretch
        # of the line (cell × _STRIDE), and each gap clipped into its cell's stretch.
        low, high = table.lowest[cell][:, :, None], table.highest[cell][:, :, None]
        x = np.clip(gaps, low, high) + (cell * _STRIDE)[:, :, None]
        below = np.interp(x.ravel(), table.line, table.probabilities).reshape(gaps.shape)
        return 1.0 - np.where(gaps < low, 0.0, np.where(gaps >= high, 1.0, below))

    def _cells(self, forecast: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row and horizon: the (horizon, band) cell of `_table.errors` its forecast
        falls in, and the log of the forecast (NaN where it is unknown)."""
        level = np.maximum(forecast, 0.0)
        bands = (self._table.edges[None, :, :] <= level[:, :, None]).sum(axis=2)
        return self._table.first[None, :] + bands, np.log(level + self.offset)

    @cached_property
    def _table(self) -> _Table:
        return _Table.of(self.edges, self.errors)

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
