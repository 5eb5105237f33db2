"""The promotion gate: a new model becomes champion only if it earns it on the held-out rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, MetadataValue

from aq_assets.ml.evaluation import BASELINES
from aq_assets.ml.intervals import INTERVALS

# The champion is compared with the candidate only on held-out days it never learnt from,
# and only when there are at least this many: a champion trained up to yesterday knows 13 of
# 14 held-out days that the candidate does not, and one day decides nothing (a retrain the
# day after a level shift lost to it on that one day while beating every baseline).
MIN_CHAMPION_DAYS = 7
MIN_CHAMPION_ROWS = 48  # and, per horizon, at least this many rows
# Coverage is checked at every horizon for each interval (ten checks with five horizons), each
# on a fortnight's few days. Chance is allowed for across all of them at once (Bonferroni): a
# candidate whose intervals are right is refused by chance in about this share of trainings,
# where two standard errors a check refused about half (test_gate simulates it).
COVERAGE_FAMILY_ALPHA = 0.05
# A candidate worse than the best baseline beyond the tolerance on the held-out fortnight is
# refused only when its days say so (a Diebold-Mariano test, as `forecast_accuracy`'s, at
# this family-wise level over the horizons): on the real sets, every first model checked that
# was refused on a long horizon's fortnight without that evidence, then trained on every day,
# beat that baseline at that horizon over the weeks after (benchmarks/README.md).
BASELINE_FAMILY_ALPHA = 0.05

FORECAST_MODEL = AssetKey("forecast_model")
GATE = AssetCheckSpec(
    "beats_baselines_and_champion",
    asset=FORECAST_MODEL,
    blocking=True,
    description=(
        "Blocks promotion unless, at every horizon on the held-out rows, the candidate (a fit "
        "that did not see them) is not worse than the best baseline beyond the baseline "
        "tolerance with evidence over the held-out days, not worse than the current champion "
        "beyond the champion tolerance at any horizon nor on average over them, on the "
        "held-out days the champion did not train on "
        f"(when there are {MIN_CHAMPION_DAYS} "
        "or more), and its 80% and 90% intervals cover within the coverage tolerance of "
        "their nominal share. "
        "When there is no usable champion and the candidate is refused, a baseline forecaster "
        "is registered instead and the check passes, saying so in its reasons."
    ),
)


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str]
    # Per horizon, the one-sided p-value that the candidate is worse than the best baseline
    # over the held-out days (only where it was worse beyond the tolerance and days were given).
    baseline_p_values: dict[int, float] = field(default_factory=dict)
    # The candidate's RMSE over the champion's, geometric mean over the horizons compared on
    # days the champion never learnt from (None: not compared).
    champion_ratio: float | None = None


def best_baselines(scores: pd.DataFrame, among: tuple[str, ...] = BASELINES) -> pd.DataFrame:
    """Per horizon: the baseline (of `among`) with the lowest RMSE (`name`) and that RMSE
    (`rmse`); NaN both where no baseline was scored (no held-out row of that horizon)."""
    rmse = scores.pivot(index="horizon", columns="forecaster", values="rmse")
    baselines = rmse[[b for b in among if b in rmse.columns]]
    scored = baselines.dropna(how="all")  # pandas will refuse idxmin over a row of NaN only
    return pd.DataFrame(
        {"name": scored.idxmin(axis=1).reindex(baselines.index), "rmse": baselines.min(axis=1)}
    )


def decide(
    scores: pd.DataFrame,
    baseline_tolerance: float,
    champion_tolerance: float,
    champion_scores: pd.DataFrame | None = None,
    intervals: pd.DataFrame | None = None,
    coverage_tolerance: float = 0.05,
    daily: pd.DataFrame | None = None,
) -> GateDecision:
    """Pass when, at every horizon, the model's RMSE <= the best baseline's × (1 + baseline
    tolerance) in `scores`, where the champion was scored (`champion_scores`: model and
    champion on the rows the champion did not train on) <= the champion's × (1 + champion
    tolerance) and, on average over those horizons (the geometric mean of the ratios), no
    more than the champion's (a retrain that does no better is not promoted), and where the
    model has intervals (`intervals`: `interval_summary`, cross-fitted over the validation
    and held-out fortnights, as `judge_candidate` makes it) each covers within
    `coverage_tolerance` of its nominal share, give or take what chance allows
    (`chance_allowance`): a fortnight of hours is a few independent days, and its coverage
    moves by several points from one fortnight to the next. With `daily` (`daily_scores` of
    the same rows), a horizon beyond the baseline tolerance is refused only with evidence over
    the days (`loss_differential` at BASELINE_FAMILY_ALPHA over the horizons)."""
    from aq_assets.ml.evaluation import loss_differential

    model = scores[scores.forecaster == "model"].set_index("horizon")["rmse"]
    best = best_baselines(scores)
    alpha = BASELINE_FAMILY_ALPHA / max(len(model), 1)
    evidence = (
        None
        if daily is None
        else loss_differential(daily, "model", 2, alpha).set_index("horizon")["p_value"]
    )
    reasons, p_values = [], {}
    for h, rmse in model.items():
        if pd.isna(rmse):
            reasons.append(
                f"{h} h: no held-out hour could be scored (the held-out days hold too few "
                "readings with one a horizon later): nothing says the model is good there. "
                "Ingest more days (aq backfill) or widen training_set's window_days."
            )
            continue
        bar = best.at[h, "rmse"] * (1 + baseline_tolerance)
        if rmse <= bar:
            continue
        p_value = np.nan if evidence is None else evidence.get(h, np.nan)
        if np.isfinite(p_value):
            p_values[int(h)] = float(p_value)
            if p_value >= alpha:
                continue  # worse on this fortnight, but its days do not say it is worse
        reasons.append(
            f"{h} h: RMSE {rmse:.3f} is worse than the best baseline "
            f"({best.at[h, 'name']}, {best.at[h, 'rmse']:.3f}) beyond the "
            f"{baseline_tolerance:.0%} tolerance"
            + (f", with evidence over its days (p = {p_value:.2g})" if p_value < alpha else "")
        )
    champion_ratio = None
    if champion_scores is not None and not champion_scores.empty:
        rmse = champion_scores.pivot(index="horizon", columns="forecaster", values="rmse")
        rows = champion_scores.groupby("horizon")["rows"].min()
        ratios = []
        for h, row in rmse.iterrows():
            if rows[h] < MIN_CHAMPION_ROWS or pd.isna(row["champion"]):
                continue
            ratios.append(row["model"] / row["champion"])
            if row["model"] > row["champion"] * (1 + champion_tolerance):
                reasons.append(
                    f"{h} h: RMSE {row['model']:.3f} is worse than the champion's "
                    f"{row['champion']:.3f} beyond the {champion_tolerance:.0%} tolerance"
                )
        if ratios:
            champion_ratio = float(np.exp(np.mean(np.log(ratios))))
            if champion_ratio > 1:
                reasons.append(
                    f"RMSE {champion_ratio - 1:.1%} above the champion's on average over the "
                    f"{len(ratios)} horizons compared (geometric mean of the ratios): a new "
                    "model replaces the champion only when it does better"
                )
    rows = intervals.to_dict("records") if intervals is not None else []
    checks = len(rows) * len(INTERVALS)
    for row in rows:
        for nominal in INTERVALS:
            coverage = row[f"coverage{nominal}"]
            noise = chance_allowance(
                row.get(f"coverage{nominal}_se", np.nan), row.get("coverage_days", 0), checks
            )
            if not abs(coverage - nominal / 100) <= coverage_tolerance + noise:
                reasons.append(
                    f"{row['horizon']} h: the {nominal}% interval covered {coverage:.1%} of "
                    f"the held-out values, beyond {coverage_tolerance:.0%} of nominal and what "
                    f"chance allows ({noise:.1%})"
                )
    return GateDecision(
        passed=not reasons,
        reasons=reasons,
        baseline_p_values=p_values,
        champion_ratio=champion_ratio,
    )


def chance_allowance(standard_error: float, days: int, checks: int) -> float:
    """How far a coverage measured over `days` days with `standard_error` may stray from the
    truth by chance, when `checks` such coverages are judged together: the two-sided
    Student t quantile (days − 1 degrees of freedom: the standard error is estimated from the
    same few days) at COVERAGE_FAMILY_ALPHA / checks, times the standard error. 0 when it
    cannot be told (no standard error, or under two days)."""
    from scipy.stats import t as student_t

    if pd.isna(standard_error) or pd.isna(days) or days < 2:
        return 0.0
    level = 1 - COVERAGE_FAMILY_ALPHA / (2 * max(checks, 1))
    return float(student_t.ppf(level, df=int(days) - 1) * standard_error)


def gate_result(
    scores: pd.DataFrame,
    decision: GateDecision,
    thresholds: dict[str, float],
    champion_version: int | None,
    champion_scores: pd.DataFrame | None,
    note: str = "",
) -> AssetCheckResult:
    """The check's result: `decision` with thresholds and observed RMSEs as metadata. `note`
    (a baseline forecaster registered in place of a refused first model) passes the check."""
    best = best_baselines(scores)
    model = scores[scores.forecaster == "model"].set_index("horizon")["rmse"]
    reasons = "\n".join(f"- {r}" for r in decision.reasons) or "all criteria met"
    metadata: dict[str, Any] = {
        **thresholds,
        "min_champion_days": MIN_CHAMPION_DAYS,
        "compared_with_champion_version": champion_version
        if champion_version is not None
        else "none",
        "reasons": MetadataValue.md(reasons + (f"\n\n{note}" if note else "")),
    }
    for h, rmse in model.items():
        metadata[f"rmse_model_h{h}"] = float(rmse)
        metadata[f"rmse_best_baseline_h{h}"] = float(best.at[h, "rmse"])
        metadata[f"best_baseline_h{h}"] = str(best.at[h, "name"])
        if h in decision.baseline_p_values:
            metadata[f"p_worse_than_best_baseline_h{h}"] = decision.baseline_p_values[h]
    if champion_scores is not None and not champion_scores.empty:
        champion = champion_scores[champion_scores.forecaster == "champion"]
        for row in champion.itertuples():
            metadata[f"rmse_champion_h{row.horizon}"] = float(row.rmse)
        metadata["champion_scored_rows"] = int(champion["rows"].max())
        if decision.champion_ratio is not None:
            metadata["rmse_over_champion_mean"] = decision.champion_ratio
        metadata["champion_compared_at_horizons"] = (
            ", ".join(
                f"{r.horizon} h" for r in champion.itertuples() if r.rows >= MIN_CHAMPION_ROWS
            )
            or f"none (fewer than {MIN_CHAMPION_ROWS} unseen rows)"
        )
    return AssetCheckResult(
        check_name=GATE.name,
        asset_key=FORECAST_MODEL,
        passed=decision.passed or bool(note),
        severity=AssetCheckSeverity.ERROR,
        metadata=metadata,
    )
