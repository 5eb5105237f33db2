"""The promotion gate: a new model becomes champion only if it earns it on the held-out rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, MetadataValue

FORECAST_MODEL = AssetKey("forecast_model")
GATE = AssetCheckSpec(
    "beats_baselines_and_champion",
    asset=FORECAST_MODEL,
    blocking=True,
    description=(
        "Blocks promotion unless the new model has lower RMSE than persistence at every horizon "
        "and is not worse than the current champion beyond the tolerance, on the same held-out rows."
    ),
)


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str]


def decide(scores: pd.DataFrame, tolerance: float) -> GateDecision:
    """Pass when, at every horizon, model RMSE < persistence RMSE and, where a champion was
    scored, model RMSE <= champion RMSE × (1 + tolerance)."""
    rmse = scores.pivot(index="horizon", columns="forecaster", values="rmse")
    reasons = []
    for h, row in rmse.iterrows():
        if not row["model"] < row["persistence"]:
            reasons.append(
                f"{h} h: RMSE {row['model']:.3f} does not beat persistence {row['persistence']:.3f}"
            )
        if (
            "champion" in row
            and pd.notna(row["champion"])
            and row["model"] > row["champion"] * (1 + tolerance)
        ):
            reasons.append(
                f"{h} h: RMSE {row['model']:.3f} is worse than the champion's {row['champion']:.3f} "
                f"beyond the {tolerance:.0%} tolerance"
            )
    return GateDecision(passed=not reasons, reasons=reasons)


def gate_result(
    scores: pd.DataFrame, tolerance: float, champion_version: int | None
) -> AssetCheckResult:
    decision = decide(scores, tolerance)
    rmse = scores.pivot(index="horizon", columns="forecaster", values="rmse")
    metadata: dict[str, Any] = {
        "champion_tolerance": tolerance,
        "compared_with_champion_version": champion_version
        if champion_version is not None
        else "none",
        "reasons": MetadataValue.md(
            "\n".join(f"- {r}" for r in decision.reasons) or "all criteria met"
        ),
    }
    for h, row in rmse.iterrows():
        metadata[f"rmse_model_h{h}"] = float(row["model"])
        metadata[f"rmse_persistence_h{h}"] = float(row["persistence"])
        if "champion" in row and pd.notna(row["champion"]):
            metadata[f"max_allowed_rmse_h{h}"] = float(
                min(row["persistence"], row["champion"] * (1 + tolerance))
            )
    return AssetCheckResult(
        check_name=GATE.name,
        asset_key=FORECAST_MODEL,
        passed=decision.passed,
        severity=AssetCheckSeverity.ERROR,
        metadata=metadata,
    )
