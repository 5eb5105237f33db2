"""`aq_assets.defs.model.gate`: the promotion gate's decision."""

from __future__ import annotations

import pandas as pd
import pytest

from aq_assets.defs.model.gate import decide

# ---------------------------------------------------------------------------------------------
# The promotion gate


def scores(model, baselines, champion=None) -> pd.DataFrame:
    """Gate input: RMSE per forecaster and horizon, from {horizon: rmse} mappings
    (`baselines`: {name: {horizon: rmse}})."""
    rows = [("model", h, r, 100) for h, r in model.items()]
    for name, rmse in baselines.items():
        rows += [(name, h, r, 100) for h, r in rmse.items()]
    rows += [("champion", h, r, 100) for h, r in (champion or {}).items()]
    return pd.DataFrame(rows, columns=["forecaster", "horizon", "rmse", "rows"])


BASELINE_RMSE = {"persistence": {1: 5.0, 3: 9.0}, "climatology": {1: 8.0, 3: 7.0}}


def gate(model, champion=None, baseline_tolerance=0.02, champion_tolerance=0.05):
    champion_scores = scores(model, {}, champion) if champion else None
    return decide(
        scores(model, BASELINE_RMSE), baseline_tolerance, champion_tolerance, champion_scores
    )


def test_gate_passes_a_model_that_beats_the_best_baseline_and_matches_the_champion():
    decision = gate({1: 4.0, 3: 6.0}, champion={1: 4.1, 3: 6.0})

    assert decision.passed
    assert decision.reasons == []


def test_gate_passes_without_a_champion():
    assert gate({1: 4.0, 3: 6.0}).passed


@pytest.mark.parametrize("model_rmse", [7.0 * 1.021, 7.5])
def test_gate_fails_a_model_worse_than_the_best_baseline_at_one_horizon(model_rmse):
    """At 3 h the best baseline is climatology (7.0), not persistence (9.0)."""
    decision = gate({1: 4.0, 3: model_rmse})

    assert not decision.passed
    assert len(decision.reasons) == 1
    assert decision.reasons[0].startswith("3 h:")
    assert "best baseline (climatology, 7.000)" in decision.reasons[0]


def test_gate_passes_a_model_within_the_baseline_tolerance():
    assert gate({1: 4.0, 3: 7.0 * 1.019}).passed


def test_gate_fails_a_model_worse_than_the_champion_beyond_tolerance():
    champion = {1: 4.0, 3: 6.0}
    model = {1: 4.0, 3: 6.0 * 1.05 * 1.01}  # still beats every baseline

    decision = gate(model, champion)

    assert not decision.passed
    assert len(decision.reasons) == 1
    assert decision.reasons[0].startswith("3 h:")
    assert "champion" in decision.reasons[0]


def test_gate_passes_a_model_worse_than_the_champion_within_tolerance():
    champion = {1: 4.0, 3: 6.0}
    model = {1: 4.0 * 1.04, 3: 6.0 * 1.05}

    decision = gate(model, champion)

    assert decision.passed, decision.reasons


def intervals(coverage80: float, coverage90: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "horizon": [1, 3],
            "rows": 100,
            "coverage80": [0.8, coverage80],
            "coverage90": [0.9, coverage90],
        }
    )


@pytest.mark.parametrize(
    ("coverage80", "coverage90", "passed"),
    [(0.8, 0.9, True), (0.76, 0.94, True), (0.74, 0.9, False), (0.8, 0.96, False)],
)
def test_gate_requires_intervals_within_five_points_of_nominal(coverage80, coverage90, passed):
    model = {1: 4.0, 3: 6.0}

    decision = decide(
        scores(model, BASELINE_RMSE), 0.02, 0.05, None, intervals(coverage80, coverage90), 0.05
    )

    assert decision.passed is passed
    assert all(r.startswith("3 h: the ") and "interval covered" in r for r in decision.reasons)


def test_gate_without_intervals_judges_the_forecasts_alone():
    assert decide(scores({1: 4.0, 3: 6.0}, BASELINE_RMSE), 0.02, 0.05, None, None).passed


@pytest.mark.parametrize(("se", "passed"), [(0.02, True), (0.005, False)])
def test_the_coverage_bar_allows_for_what_a_fortnight_cannot_tell(se, passed):
    """7 points short: within 5 points and two standard errors of 2 points, not of 0.5."""
    covered = intervals(0.73, 0.9).assign(coverage80_se=se, coverage90_se=se)

    decision = decide(scores({1: 4.0, 3: 6.0}, BASELINE_RMSE), 0.02, 0.05, None, covered, 0.05)

    assert decision.passed is passed
