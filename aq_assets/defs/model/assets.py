"""`forecast_model` (trained, judged, registered in MLflow) and `champion_model` (the alias)."""

import datetime
from typing import Any

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AutomationCondition,
    Config,
    Failure,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from aq_assets.defs.model.gate import GATE, gate_result
from aq_assets.defs.model.selection import Settings, recent_backtest, score_metrics, select
from aq_assets.defs.model.tracking import MLflowTracking
from aq_assets.defs.training.lineage import content_fingerprint
from aq_assets.ml.backtest import origins_table, pooled_rmse
from aq_assets.ml.evaluation import scores_table
from aq_assets.ml.features import FeatureSpec
from aq_assets.ml.model import BLEND_COMPONENTS, booster_params
from aq_assets.ml.registry import run_url as mlflow_run_url
from aq_assets.settings import env_number
from aq_assets.target import ForecastTarget

# How old the model may get before it shows as stale and is retrained; read at load (at
# least 0.01 days: Dagster's freshness window is at least a minute).
MODEL_MAX_AGE = datetime.timedelta(days=env_number("AQ_MODEL_MAX_AGE_DAYS", "7", minimum=0.01))

GATE_TAG = "aq.gate"
TRAINED_UNTIL_TAG = "aq.trained_until"  # the last hour a version learnt from
KIND_TAG = "aq.kind"  # "trained", or "baseline" for a forecaster without boosters


class ForecastModelConfig(Config):
    holdout_days: int = 14
    """Final days held out to judge the candidate and the baselines on the same rows."""
    validation_days: int = 14
    """Days before the end of what a fit learns from, used to choose its boosting rounds and
    blend weights."""
    baseline_tolerance: float = 0.03
    """How much worse than the best baseline (relative RMSE) the candidate may be at a horizon
    and still pass. In the backtests a model better than every baseline pooled is still worse
    than the best one at some horizon on some fortnights: the 90th percentile of its worst
    horizon's ratio is 1.03 (benchmarks/README.md)."""
    champion_tolerance: float = 0.05
    """How much worse than the champion (relative RMSE) a new model may be at one horizon and
    still pass (on average over the horizons it must be no worse). Retraining on nearly the
    same data moves a horizon's RMSE by 2-3%, so a tighter bound per horizon refuses models
    that are better overall at random."""
    coverage_tolerance: float = 0.05
    """How far from nominal (80% and 90%) the candidate's intervals may cover on the held-out
    days and still pass."""
    max_rounds: int = 3000
    """Upper bound on boosting rounds per horizon (early stopping usually ends sooner)."""
    backtest_origins: int = 0
    """Fortnights before the held-out days on which the registered model's settings are also
    backtested when the gate passes (trained again on the days before each and scored on it;
    each costs about a third of the training time). The table logged to MLflow always has the
    held-out fortnight, where the candidate trained before it is scored;
    `benchmarks/forecast_quality.py` backtests a whole dataset."""


# Eager, except that a failed run of the model also counts as handled: a training set it
# failed on (too few days, say) is retried when the set changes again, not at once, where
# stock `eager()` would run it again on the same rows and fail and alert a second time. (A
# set rebuilt in the same tick as a failure is taken as handled too; the freshness policy
# retrains then.)
RETRAINS_ON_A_NEW_TRAINING_SET = AutomationCondition.eager().replace(
    "handled",
    (
        AutomationCondition.newly_requested()
        | AutomationCondition.newly_updated()
        | AutomationCondition.initial_evaluation()
        | AutomationCondition.execution_failed().newly_true()
    ).with_label("handled or failed"),
)


@asset(
    group_name="model",
    ins={"training_set": AssetIn()},
    check_specs=[GATE],
    freshness_policy=FreshnessPolicy.time_window(fail_window=MODEL_MAX_AGE),
    automation_condition=RETRAINS_ON_A_NEW_TRAINING_SET,
    kinds={"xgboost", "mlflow"},
)
def forecast_model(
    context: AssetExecutionContext,
    config: ForecastModelConfig,
    training_set: pd.DataFrame,
    forecast_target: ForecastTarget,
    mlflow_tracking: MLflowTracking,
) -> MaterializeResult:
    """An XGBoost forecaster of the next 1-24 hours blended with persistence and
    climatology, registered as a new version of `aq-forecast` in MLflow: its boosting rounds
    and blend weights chosen on the last validation days, then trained on every day of the
    training set. Before that, a candidate trained without the last held-out days is judged on
    them against persistence, same-hour-yesterday, hour-of-day climatology and the current
    champion (on the days the champion never saw). When there is no usable champion and the
    candidate is refused, the best baseline per horizon is registered and promoted instead, so
    there is always a forecast to serve."""
    spec = FeatureSpec.of_training_set(training_set, forecast_target.parameter)
    fingerprint = content_fingerprint(training_set)
    trained_until = training_set["datetime_utc"].max()
    champion_version = mlflow_tracking.champion_version()
    champion, champion_until = None, None
    if champion_version is not None:
        try:
            champion = mlflow_tracking.load_forecaster(champion_version)
            until = mlflow_tracking.version_tags(champion_version).get(TRAINED_UNTIL_TAG)
            champion_until = pd.Timestamp(until) if until else None
        except Exception as exc:  # a champion we cannot load is reported, not fatal
            context.log.warning(f"Could not load champion version {champion_version}: {exc}")
    settings = Settings(
        config.holdout_days,
        config.validation_days,
        config.baseline_tolerance,
        config.champion_tolerance,
        config.max_rounds,
        config.coverage_tolerance,
    )

    tags = {
        "dagster_run_id": context.run.run_id,
        "dagster_asset": context.asset_key.to_user_string(),
        "training_set_fingerprint": fingerprint,
    }
    with mlflow_tracking.start_run(f"forecast_model-{context.run.run_id[:8]}", tags) as run:
        mlflow_tracking.log_training_set(
            training_set,
            fingerprint,
            spec.target_columns[0],
            built_from=_training_set_partitions(context),
            partitions={
                "first_day": str(training_set["datetime_utc"].min().date()),
                "last_day": str(trained_until.date()),
                "sensors": [int(s) for s in spec.sensors],
            },
        )
        chosen = select(training_set, spec, champion, champion_until, settings, context.log)
        judged, registered = chosen.judged, chosen.registered
        mlflow_tracking.log_params(
            {
                "parameter": spec.parameter,
                "horizons": ",".join(map(str, spec.horizons)),
                "sensors": len(spec.sensors),
                "holdout_days": judged.holdout_days,
                "validation_days": judged.validation_days,
                "baseline_tolerance": config.baseline_tolerance,
                "champion_tolerance": config.champion_tolerance,
                "target": "change from current level, blended with " + ", ".join(BLEND_COMPONENTS),
                **{f"xgb_{k}": v for k, v in booster_params(spec).items()},
            }
        )
        metrics = score_metrics(judged.scores, chosen.registered_scores, judged.intervals)
        mlflow_tracking.log_metrics(metrics)
        table = scores_table(judged.scores)
        mlflow_tracking.log_text(table, "evaluation.md")
        backtested = recent_backtest(
            judged,
            registered,
            training_set,
            config.backtest_origins if chosen.decision.passed else 0,
        )
        if not backtested.empty:
            mlflow_tracking.log_text(origins_table(backtested), "backtest.md")
            mlflow_tracking.log_metrics(
                {
                    f"backtest_skill_vs_best_h{h}": float(skill)
                    for h, skill in pooled_rmse(backtested, [])["skill_vs_best"].items()
                }
            )
        mlflow_tracking.log_dict(
            {str(h): w for h, w in registered.blend_weights.items()}, "blend_weights.json"
        )
        example = judged.holdout[judged.holdout["level"].notna()].head(3)
        version = mlflow_tracking.register(
            registered, example[["sensor_id", "datetime_utc", *spec.feature_columns]]
        )
        mlflow_tracking.log_drift_reference(chosen.drift_reference(training_set, spec))
        mlflow_tracking.tag_version(
            version,
            {
                GATE_TAG: "passed" if chosen.decision.passed or chosen.note else "failed",
                "aq.gate_reasons": "; ".join(chosen.decision.reasons) or "none",
                KIND_TAG: "baseline" if registered.is_baseline else "trained",
                TRAINED_UNTIL_TAG: str(chosen.registered_until),
                "training_set_fingerprint": fingerprint,
            },
        )

    run_url = mlflow_run_url(mlflow_tracking.uri, run.info.experiment_id, run.info.run_id)
    metadata: dict[str, Any] = {
        "model_version": version,
        "model_kind": "baseline" if registered.is_baseline else "trained",
        "mlflow_run_id": run.info.run_id,
        "mlflow_run": MetadataValue.url(run_url)
        if run_url
        else f"{mlflow_tracking.uri} (mlflow ui --backend-store-uri ...)",
        "training_set_fingerprint": fingerprint,
        "trained_until_utc": str(chosen.registered_until),
        "evaluation": MetadataValue.md(table),
        "holdout_rows": len(judged.holdout),
        "train_rows": len(chosen.learnt(training_set)),
        "best_iterations": MetadataValue.json(
            {str(h): n for h, n in registered.best_iterations.items()}
        ),
        "blend_weights": MetadataValue.json(
            {str(h): w for h, w in registered.blend_weights.items()}
        ),
    }
    for name, value in metrics.items():
        if name.startswith(("coverage", "width", "pinball")):
            metadata[name] = value
    for h, row in chosen.registered_scores.set_index("horizon").iterrows():
        metadata[f"rmse_h{h}"] = float(row["rmse"])
        metadata[f"mae_h{h}"] = float(row["mae"])
        metadata[f"skill_h{h}"] = float(row["skill"])
    thresholds = {
        "baseline_tolerance": config.baseline_tolerance,
        "champion_tolerance": config.champion_tolerance,
    }
    return MaterializeResult(
        metadata=metadata,
        check_results=[
            gate_result(
                judged.scores,
                chosen.decision,
                thresholds,
                champion_version if chosen.champion_scores is not None else None,
                chosen.champion_scores,
                chosen.note,
            )
        ],
    )


def _training_set_partitions(context: AssetExecutionContext) -> str:
    event = context.instance.get_latest_materialization_event(AssetKey("training_set"))
    if event is None or event.asset_materialization is None:
        return "unknown"
    value = event.asset_materialization.metadata.get("built_from_partitions")
    return str(value.value) if value is not None else "unknown"


@asset(
    group_name="model",
    deps=["forecast_model"],
    automation_condition=AutomationCondition.eager(),
    kinds={"mlflow"},
)
def champion_model(
    context: AssetExecutionContext, mlflow_tracking: MLflowTracking
) -> MaterializeResult:
    """The `champion` alias of `aq-forecast` in the MLflow registry: the version predictions
    and the HTTP service use. It moves to the newest forecast_model only if that version
    passed the promotion gate; otherwise the old champion stays and this says why."""
    event = context.instance.get_latest_materialization_event(AssetKey("forecast_model"))
    if event is None or event.asset_materialization is None:
        raise Failure("No forecast_model yet: materialize forecast_model first.")
    candidate = int(event.asset_materialization.metadata["model_version"].value)
    tags = mlflow_tracking.version_tags(candidate)
    previous = mlflow_tracking.champion_version()
    if tags.get(GATE_TAG) == "passed":
        mlflow_tracking.set_champion(candidate)
        decision = f"promoted version {candidate}" + (
            f" (replacing {previous})" if previous else ""
        )
        if tags.get(KIND_TAG) == "baseline":
            decision += (
                ": a BASELINE forecaster (no trained model passed the gate yet: "
                f"{tags.get('aq.gate_reasons', '')})"
            )
        champion: int | None = candidate
    else:
        reasons = tags.get("aq.gate_reasons", "no gate result recorded")
        decision = f"kept {'version ' + str(previous) if previous else 'no champion'}: version {candidate} failed the gate: {reasons}"
        champion = previous
    context.log.info(decision)
    return MaterializeResult(
        metadata={
            "champion_version": champion if champion is not None else "none",
            "candidate_version": candidate,
            "previous_champion": previous if previous is not None else "none",
            "promoted": champion == candidate and previous != candidate,
            "champion_kind": mlflow_tracking.version_tags(champion).get(KIND_TAG, "trained")
            if champion is not None
            else "none",
            "decision": decision,
        }
    )
