"""What the service is serving: the champion model and the online_features snapshot, each an
immutable object behind one reference. `refresh()` checks the alias and the file and swaps
in what changed; a request reads each reference once, so it never mixes versions."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from dataclasses import dataclass, replace

import anyio

from aq_assets.ml import air_quality
from serving.champion import LoadedModel, Registry
from serving.forecasting import SensorAnswers
from serving.metrics import ServiceMetrics
from serving.settings import Settings
from serving.snapshot import OnlineSnapshot, file_stamp

log = logging.getLogger("serving")


@dataclass(frozen=True)
class LoadFailure:
    what: str  # "model", "alias" or "online_features"
    version: str | None
    error: str
    at: dt.datetime


class ServingState:
    def __init__(
        self, settings: Settings, metrics: ServiceMetrics, registry: Registry | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.registry = registry or Registry(
            settings.tracking_uri, settings.registered_model, settings.alias
        )
        self.model: LoadedModel | None = None
        self.snapshot: OnlineSnapshot | None = None
        self.model_failure: LoadFailure | None = None
        self.snapshot_failure: LoadFailure | None = None
        self.waiting_for: str | None = "the first check of the registry"
        self.checked_at: dt.datetime | None = None
        self.sensor_answers = SensorAnswers()
        # Set by the lifespan (it needs the event loop): batches computed one at a time per
        # process; concurrent ones in threads only take turns on the GIL, slower for each.
        self.batch_limiter: anyio.CapacityLimiter | None = None
        self._refreshing = threading.Lock()

    def refresh(self) -> None:
        """Check the champion alias and the snapshot file once and load what changed; a
        failed load keeps what was served. Blocking: the poller runs it in a worker thread;
        tests call it directly."""
        with self._refreshing:
            self._refresh_model()
            self._refresh_snapshot()
            self.checked_at = dt.datetime.now(dt.UTC)

    async def poll(self) -> None:
        """Refresh every `poll_seconds`, until cancelled."""
        while True:
            await asyncio.sleep(self.settings.poll_seconds)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # refresh reports its own failures; never let the poller die
                log.exception("refresh failed")

    def _refresh_model(self) -> None:
        registry = self.registry
        try:
            version = registry.champion_version()
        except Exception as exc:
            self._model_failed("alias", None, exc)
            if self.model is None:
                self.waiting_for = "a readable model registry (see last_load_error)"
            return
        if version is None:
            self.waiting_for = f"a '{registry.alias}' alias on registered model '{registry.name}'"
            return
        current = self.model
        if current is not None and current.version == version:
            return
        try:
            loaded = registry.load(version)
        except Exception as exc:
            self._model_failed("model", version, exc)
            return
        loaded = replace(
            loaded,
            thresholds=air_quality.thresholds(loaded.spec.parameter, self.settings.thresholds),
        )
        self.model = loaded  # the swap: requests that started earlier keep their reference
        self.model_failure = None
        self.waiting_for = None
        self.metrics.model_version.set(_numeric(version))
        self.metrics.model_loaded_at.set(loaded.loaded_at.timestamp())
        if current is not None:
            self.metrics.swaps.inc()
        log.info(
            "serving %s version %s%s",
            registry.name,
            version,
            f" (replacing version {current.version})" if current else "",
        )
        if not loaded.forecaster.compiled:  # right, but ~10x slower per request
            log.warning(
                "version %s runs its trees through XGBoost, not compiled: %s",
                version,
                loaded.forecaster.compiled_error,
            )

    def problems(self) -> dict[str, LoadFailure]:
        """The last failed loads still unresolved, by what failed to load."""
        return {
            name: failure
            for name, failure in (
                ("last_load_error", self.model_failure),
                ("snapshot_error", self.snapshot_failure),
            )
            if failure is not None
        }

    def snapshot_unreadable(self) -> bool:
        """A snapshot file is there but none could ever be read: sensor forecasts fail."""
        return self.snapshot is None and self.snapshot_failure is not None

    def _model_failed(self, what: str, version: str | None, exc: Exception) -> None:
        self.model_failure = LoadFailure(
            what, version, f"{type(exc).__name__}: {exc}"[:500], dt.datetime.now(dt.UTC)
        )
        self.metrics.load_failures.inc()
        kept = f"; still serving version {self.model.version}" if self.model else ""
        subject = f"version {version}" if version else "the champion alias"
        log.error("could not load %s of %s%s: %s", subject, self.registry.name, kept, exc)

    def _refresh_snapshot(self) -> None:
        path = self.settings.online_features_path
        stamp = file_stamp(path)
        current = self.snapshot
        if stamp is None or (current is not None and current.stamp == stamp):
            return
        try:
            snapshot = OnlineSnapshot.load(path)
        except Exception as exc:
            self.snapshot_failure = LoadFailure(
                "online_features",
                None,
                f"{type(exc).__name__}: {exc}"[:500],
                dt.datetime.now(dt.UTC),
            )
            self.metrics.snapshot_failures.inc()
            log.error("could not load the online_features snapshot %s: %s", path, exc)
            return
        self.snapshot = snapshot
        self.snapshot_failure = None
        self.metrics.snapshot_loads.inc()
        log.info(
            "online_features: %d readings of %d sensors",
            snapshot.rows,
            len(snapshot.history.sensors),
        )


def _numeric(version: str) -> float:
    try:
        return float(version)
    except ValueError:
        return 0.0
