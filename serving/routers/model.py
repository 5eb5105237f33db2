"""What model is serving, how good it was on held-out days, and where it came from."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter

from serving.deps import ServedDep
from serving.schemas import HorizonMetrics, LoadError, ModelInfo, SnapshotInfo

router = APIRouter(tags=["model"])


@router.get("/v1/model", response_model=ModelInfo)
async def model_info(served: ServedDep) -> ModelInfo:
    service, model = served.service, served.model
    failure, snapshot_failure = service.model_failure, service.snapshot_failure
    spec = model.spec
    snapshot = service.snapshot
    return ModelInfo(
        name=model.name,
        alias=service.registry.alias,
        version=model.version,
        parameter=spec.parameter,
        kind="baseline" if model.forecaster.is_baseline else "trained",
        horizons=list(model.forecaster.horizons),
        history_hours=spec.history_hours,
        covariates=list(spec.covariates),
        trained_at=model.trained_at,
        loaded_at=model.loaded_at,
        run_id=model.run_id,
        mlflow_run_url=model.run_url,
        metrics={str(h): HorizonMetrics(**scores) for h, scores in model.metrics.items()},
        last_load_error=LoadError(**failure.__dict__) if failure else None,
        checked_at=service.checked_at,
        snapshot=None
        if snapshot is None
        else SnapshotInfo(
            path=str(snapshot.path),
            modified_utc=snapshot.modified_at,
            latest_reading_utc=snapshot.latest_reading_at,
            age_hours=snapshot.age_hours(dt.datetime.now(dt.UTC)),
        ),
        snapshot_error=LoadError(**snapshot_failure.__dict__) if snapshot_failure else None,
    )
