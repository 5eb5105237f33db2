"""The production topology (docker-compose.yml, Dockerfile, deploy/) proven without a Docker engine.

1. `docker compose config` (or Debian's `docker-compose`) accepts docker-compose.yml and the
   scale-out overrides in deploy/, refuses them while a secret is missing from the env file;
   .env.example names every variable compose reads; the code server gets every setting the
   code location reads (the PostgreSQL warehouse among them); the instance configs in deploy/
   are valid and keep one DuckDB writer.
2. The processes docker-compose.yml starts, started here with the same commands, the same
   health checks and the production deploy/dagster.yaml, against the local PostgreSQL
   (127.0.0.1:5432, see postgres.py; databases and roles created by
   deploy/postgres/init-databases.sh under unique names and dropped afterwards): the MLflow server on Postgres, the gRPC code server,
   dagster-webserver, dagster-daemon and the forecast service. Through the webserver's GraphQL
   API it registers the sensors, backfills `raw_readings` and trains; then the Dagster runs and
   events are in Postgres, the readings in the PostgreSQL warehouse, the model is registered
   in the MLflow server, and the service answers with it.

Both need tools outside the venv: a compose CLI and PostgreSQL. They fail, naming the fix,
when those are missing: a skipped test would look green and prove nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from aq_assets_tests.conftest import free_port
from aq_assets_tests.postgres import PG_ADMIN, PG_HOST, PG_PORT, admin_sql, require_postgres

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DEPLOY = REPO / "deploy"
VENV_BIN = Path(sys.executable).parent

SECRETS = (
    "POSTGRES_PASSWORD",
    "DAGSTER_PG_PASSWORD",
    "MLFLOW_PG_PASSWORD",
    "WAREHOUSE_PG_PASSWORD",
    "AQ_API_TOKEN",
)
AQ_SERVICES = ("mlflow", "code-server", "webserver", "daemon", "service")


# One simulated location (4 sensors, one of them pm25) × 50 days: enough for the default
# 14 validation + 14 holdout days, small enough for two cores. The simulator is deterministic;
# on these days location 9002's model beats persistence by 10-25% at every horizon, so the
# promotion gate passes (location 9001's does not at 24 h).
LOCATIONS = "9002"
SENSORS = 4
FIRST_DAY = dt.date(2025, 5, 1)
DAYS = 50
TRAIN_CONFIG = {
    "ops": {
        "training_set": {"config": {"window_days": DAYS}},
        "forecast_model": {"config": {"max_rounds": 100}},
    }
}
DEADLINE_S = 900  # a wait bound for the whole flow on a loaded CI machine; laps are printed


# --------------------------------------------------------------------------------------------
# docker-compose.yml, read as compose reads it
# --------------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def interpolate(text: str, values: Mapping[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` against `values`."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        value = values.get(name, "")
        if op == ":?" and not value:
            raise KeyError(f"{name}: {arg}")
        return value or (arg if op == ":-" else "")

    return _VARIABLE.sub(replace, text)


def compose_variables() -> set[str]:
    return {m["name"] for m in _VARIABLE.finditer(COMPOSE_FILE.read_text())}


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


@dataclass(frozen=True)
class ComposeService:
    command: list[str]
    environment: dict[str, str]
    healthcheck: list[str]


def compose_service(name: str, values: Mapping[str, str]) -> ComposeService:
    """A service of docker-compose.yml with its variables interpolated from `values`."""
    spec = yaml.safe_load(COMPOSE_FILE.read_text())["services"][name]
    environment = {k: interpolate(str(v), values) for k, v in spec["environment"].items()}
    test = spec["healthcheck"]["test"]
    assert test[0] == "CMD", f"{name}: healthcheck must be an exec-form CMD"
    return ComposeService(list(spec["command"]), environment, list(test[1:]))


def localize(args: Sequence[str], replacements: Mapping[str, str]) -> list[str]:
    """Container addresses and paths in a command, replaced by this machine's."""
    out = []
    for arg in args:
        for old, new in replacements.items():
            arg = arg.replace(old, new)
        out.append(arg)
    return out


def compose_cli() -> list[str]:
    """`docker compose` (v2 plugin) or `docker-compose` (v1, Debian's package)."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.fail(
        "No compose CLI to validate docker-compose.yml: install one "
        "(`apt-get install docker-compose` on Debian/Ubuntu, or Docker Engine with the compose "
        "plugin), see README 'Running in production'."
    )


def published_port(port: Any) -> tuple[str, int]:
    """(host address, published port) of a port entry, in compose v1 or v2 form."""
    if isinstance(port, dict):
        return str(port.get("host_ip", "0.0.0.0")), int(port["published"])
    host, published, _target = str(port).split("/")[0].rsplit(":", 2)
    return host, int(published)


def run_compose_config(env_file: Path, *overrides: Path) -> subprocess.CompletedProcess[str]:
    # Only the env file supplies variables: nothing leaks in from the caller's environment.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    files = [arg for path in (COMPOSE_FILE, *overrides) for arg in ("-f", str(path))]
    return subprocess.run(
        [*compose_cli(), *files, "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def write_env_file(path: Path, overrides: Mapping[str, str]) -> Path:
    values = {**env_example(), **overrides}
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


# --------------------------------------------------------------------------------------------
# 1. The compose file
# --------------------------------------------------------------------------------------------


def test_compose_accepts_the_topology_and_publishes_only_ui_mlflow_and_api(tmp_path):
    env_file = write_env_file(tmp_path / ".env", {name: f"secret-{name}" for name in SECRETS})
    result = run_compose_config(env_file)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]

    assert set(services) == {"postgres", *AQ_SERVICES}
    published = {
        port: (name, host)
        for name, spec in services.items()
        for host, port in map(published_port, spec.get("ports", []))
    }
    # The UI and MLflow have no login, the API speaks plain HTTP: only this machine reaches
    # them unless told otherwise.
    assert published == {
        3000: ("webserver", "127.0.0.1"),
        5000: ("mlflow", "127.0.0.1"),
        8000: ("service", "127.0.0.1"),
    }
    for name, spec in services.items():
        assert spec.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert spec.get("restart") == "unless-stopped", f"{name} has no restart policy"
    for name in AQ_SERVICES:  # one image, built from this repo's Dockerfile
        assert services[name]["image"] == services["code-server"]["image"]
        assert Path(services[name]["build"]["context"]).resolve() == REPO

    def mounts(name: str) -> dict[str, str]:
        out = {}
        for volume in services[name].get("volumes", []):
            if isinstance(volume, dict):
                out[volume["target"]] = volume["source"] + (
                    ":ro" if volume.get("read_only") else ""
                )
            else:
                source, target, *mode = str(volume).split(":")
                out[target] = source + (":ro" if mode == ["ro"] else "")
        return out

    # AQ_HOME (reports, the online features snapshot): read-write where runs execute,
    # read-only for the service, nowhere else. Compute logs: written by runs, read by the
    # webserver.
    assert mounts("code-server")["/data/aq"] == "aq_home"
    assert mounts("service")["/data/aq"] == "aq_home:ro"
    assert all("/data/aq" not in mounts(n) for n in ("webserver", "daemon", "mlflow"))
    assert mounts("webserver")["/opt/dagster/storage"] == "dagster_storage"
    assert mounts("code-server")["/opt/dagster/storage"] == "dagster_storage"
    assert mounts("mlflow")["/mlartifacts"] == "mlflow_artifacts"
    assert set(config["volumes"]) == {
        "postgres_data",
        "mlflow_artifacts",
        "aq_home",
        "dagster_storage",
    }

    # Secrets reach only the services that use them, with the values from the env file.
    env = {name: spec.get("environment", {}) for name, spec in services.items()}
    assert env["service"]["AQ_API_TOKEN"] == "secret-AQ_API_TOKEN"
    assert [n for n in env if "AQ_API_TOKEN" in env[n]] == ["service"]
    assert sorted(n for n in env if "MLFLOW_PG_PASSWORD" in env[n]) == ["mlflow", "postgres"]
    assert sorted(n for n in env if "DAGSTER_PG_PASSWORD" in env[n]) == [
        "code-server",
        "daemon",
        "postgres",
        "webserver",
    ]
    assert [n for n in env if "POSTGRES_PASSWORD" in env[n]] == ["postgres"]
    # The warehouse is PostgreSQL: only the code server (where runs execute) reaches it.
    assert sorted(n for n in env if "WAREHOUSE_PG_PASSWORD" in env[n]) == ["postgres"]
    assert [n for n in env if "AQ_WAREHOUSE_URL" in env[n]] == ["code-server"]
    assert env["code-server"]["AQ_WAREHOUSE_URL"] == "postgresql://aq@postgres:5432/aq"
    assert env["code-server"]["AQ_WAREHOUSE_PASSWORD"] == "secret-WAREHOUSE_PG_PASSWORD"
    # Every process that writes the instance's events batches the per-partition ones.
    for name in ("code-server", "daemon", "webserver"):
        assert env[name]["DAGSTER_EVENT_BATCH_SIZE"] == "1000", name


@pytest.mark.parametrize("secret", SECRETS)
def test_compose_refuses_to_start_without_a_secret(tmp_path, secret):
    values = {name: f"secret-{name}" for name in SECRETS}
    values[secret] = ""
    result = run_compose_config(write_env_file(tmp_path / ".env", values))
    assert result.returncode != 0
    assert secret in result.stderr


def test_the_code_server_gets_every_setting_the_code_location_reads():
    """A variable the code location reads but compose does not pass would silently fall back
    to its default in production."""
    pattern = re.compile(r"(?:env_or_default|env_value|EnvVar)\(\s*\"([A-Z0-9_]+)\"")
    read = {
        name
        for path in (REPO / "aq_assets").rglob("*.py")
        for name in pattern.findall(path.read_text())
    }
    assert {"AQ_HOME", "AQ_SOURCE", "MLFLOW_TRACKING_URI"} <= read
    passed = set(yaml.safe_load(COMPOSE_FILE.read_text())["services"]["code-server"]["environment"])
    assert not read - passed, f"docker-compose.yml does not pass {sorted(read - passed)}"


def test_env_example_names_every_variable_compose_reads():
    missing = sorted(compose_variables() - set(env_example()))
    assert not missing, f".env.example does not name {missing}"
    assert all(not env_example()[name] for name in SECRETS), ".env.example must not hold secrets"


@pytest.mark.parametrize(
    "override", ["deploy/celery/docker-compose.celery.yml", "deploy/minio/docker-compose.s3.yml"]
)
def test_compose_accepts_the_scale_out_overrides(tmp_path, override):
    secrets = {
        name: f"secret-{name}" for name in (*SECRETS, "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")
    }
    env_file = write_env_file(tmp_path / ".env", secrets)
    result = run_compose_config(env_file, REPO / override)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "config", ["deploy/dagster.yaml", "deploy/docker/dagster.yaml", "deploy/celery/dagster.yaml"]
)
def test_instance_configs_are_valid_and_keep_one_duckdb_writer(tmp_path, config):
    from dagster._core.instance.config import dagster_instance_config

    shutil.copyfile(REPO / config, tmp_path / "dagster.yaml")
    values, _ = dagster_instance_config(str(tmp_path))  # schema and limit-placement checks
    assert values["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert values["concurrency"]["pools"]["default_limit"] == 1
    assert values["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert values["run_retries"]["enabled"] and values["run_monitoring"]["enabled"]


# --------------------------------------------------------------------------------------------
# 2. The processes, on this machine
# --------------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, ...), or None if gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _descendants(pid: int) -> dict[int, str]:
    """Every descendant of `pid` (runs are grandchildren of the code server), with its start
    time, so that a later kill reaches the same process and never a reused pid."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields:
            parents.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child, started in parents.get(todo.pop(), []):
            found[child] = started
            todo.append(child)
    return found


@dataclass
class Processes:
    """Processes started in their own process groups, all stopped on teardown."""

    logs: Path
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.started[name] = subprocess.Popen(
            list(args),
            env=dict(env),
            cwd=workdir(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace").splitlines() if path.exists() else []
        return f"--- {name} (last {lines} lines of {path}) ---\n" + "\n".join(text[-lines:])

    def diagnostics(self) -> str:
        return "\n".join(self.tail(name) for name in self.started)

    def check_alive(self) -> None:
        for name, proc in self.started.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}\n{self.diagnostics()}")

    def stop_all(self) -> None:
        """SIGTERM to every process group at once, SIGKILL to what is left after 20 s, then to
        any descendant that left its group."""
        descendants = {
            pid: t for p in self.started.values() for pid, t in _descendants(p.pid).items()
        }
        for proc in self.started.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.started.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for pid, started in descendants.items():
            fields = _stat(pid)
            if fields and fields[19] == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def wait_until(
    what: str,
    ready: Callable[[], Any],
    processes: Processes,
    timeout_s: float,
    every_s: float = 1.0,
) -> Any:
    """Poll `ready` until it returns something truthy; fail with the logs at the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        processes.check_alive()
        try:
            result = ready()
            if result:
                return result
        except (httpx.HTTPError, OSError) as exc:
            last_error = exc
        time.sleep(every_s)
    pytest.fail(
        f"Timed out after {timeout_s:.0f} s waiting for {what} (last error: {last_error})\n"
        f"{processes.diagnostics()}"
    )


@functools.cache
def workdir() -> Path:
    """Where the processes run, as in their image: not the repo, whose `.env` (`aq up` writes
    one) every Dagster process would read and obey. Holds what the commands name: deploy/."""
    folder = Path(tempfile.mkdtemp(prefix="aq-topology-workdir-"))
    (folder / "deploy").symlink_to(DEPLOY)
    return folder


def healthy(command: Sequence[str], env: Mapping[str, str]) -> Callable[[], bool]:
    """A compose health check, run here."""

    def check() -> bool:
        done = subprocess.run(
            list(command), env=dict(env), cwd=workdir(), capture_output=True, timeout=60
        )
        return done.returncode == 0

    return check


@dataclass(frozen=True)
class Databases:
    values: dict[str, str]  # the .env values compose would use for Postgres

    def dsn(self, role: str) -> dict[str, Any]:
        prefix = {"dagster": "DAGSTER", "mlflow": "MLFLOW", "warehouse": "WAREHOUSE"}[role]
        return {
            "host": PG_HOST,
            "port": PG_PORT,
            "user": self.values[f"{prefix}_PG_USER"],
            "password": self.values[f"{prefix}_PG_PASSWORD"],
            "dbname": self.values[f"{prefix}_PG_DB"],
        }


@pytest.fixture
def databases() -> Iterator[Databases]:
    """The databases and roles the compose init script makes (Dagster, MLflow, the warehouse),
    uniquely named, dropped after."""
    require_postgres("The topology test")
    suffix = uuid.uuid4().hex[:10]
    values = {
        "DAGSTER_PG_USER": f"aq_test_{suffix}_dagster",
        "DAGSTER_PG_PASSWORD": f"p@ss:{uuid.uuid4().hex}/",  # needs quoting in a URI
        "DAGSTER_PG_DB": f"aq_test_{suffix}_dagster",
        "MLFLOW_PG_USER": f"aq_test_{suffix}_mlflow",
        "MLFLOW_PG_PASSWORD": f"p@ss:{uuid.uuid4().hex}/",
        "MLFLOW_PG_DB": f"aq_test_{suffix}_mlflow",
        "WAREHOUSE_PG_USER": f"aq_test_{suffix}_warehouse",
        "WAREHOUSE_PG_PASSWORD": f"p@ss:{uuid.uuid4().hex}/",
        "WAREHOUSE_PG_DB": f"aq_test_{suffix}_warehouse",
    }
    init_env = {
        "PATH": os.environ.get("PATH", ""),
        "PGHOST": PG_HOST,
        "PGPORT": str(PG_PORT),
        "POSTGRES_USER": PG_ADMIN,
        **({"PGPASSWORD": os.environ["PGPASSWORD"]} if "PGPASSWORD" in os.environ else {}),
        **values,
    }
    try:
        done = subprocess.run(
            ["sh", str(DEPLOY / "postgres" / "init-databases.sh")],
            env=init_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        yield Databases(values)
    finally:
        with contextlib.suppress(Exception):
            admin_sql(
                *(
                    f'DROP DATABASE IF EXISTS "{values[k]}" WITH (FORCE)'
                    for k in ("DAGSTER_PG_DB", "MLFLOW_PG_DB", "WAREHOUSE_PG_DB")
                ),
                *(
                    f'DROP ROLE IF EXISTS "{values[k]}"'
                    for k in ("DAGSTER_PG_USER", "MLFLOW_PG_USER", "WAREHOUSE_PG_USER")
                ),
            )


@pytest.fixture
def processes(tmp_path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(logs)
    try:
        yield procs
    finally:
        procs.stop_all()


class GraphQL:
    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        response = httpx.post(self.url, json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]


LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}"""
RUN_STATUS = (
    "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status jobName } } }"
)
RUN_FAILURES = """
query($id: ID!) {
  logsForRun(runId: $id) {
    ... on EventConnection { events { __typename ... on MessageEvent { message }
      ... on ExecutionStepFailureEvent { error { message } } } }
  }
}"""
LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}"""
BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename ... on PartitionBackfill { status numPartitions error { message } }
  }
}"""
SENSOR_KEYS = """
{ assetNodeOrError(assetKey: {path: ["raw_readings"]}) {
    ... on AssetNode { partitionKeysByDimension { name partitionKeys } } } }"""
TERMINAL_RUN = {"SUCCESS", "FAILURE", "CANCELED"}
TERMINAL_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def launch_run(gql: GraphQL, job: str, run_config: Mapping[str, Any] | None = None) -> str:
    params = {
        "selector": {
            "repositoryLocationName": "aq",
            "repositoryName": "__repository__",
            "jobName": job,
        },
        "runConfigData": dict(run_config or {}),
    }
    result = gql(LAUNCH_RUN, params=params)["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return str(result["run"]["runId"])


def wait_for_run(gql: GraphQL, run_id: str, processes: Processes, timeout_s: float) -> None:
    def finished() -> str | None:
        status = gql(RUN_STATUS, id=run_id)["runOrError"]["status"]
        return status if status in TERMINAL_RUN else None

    status = wait_until(f"run {run_id}", finished, processes, timeout_s)
    if status != "SUCCESS":
        events = gql(RUN_FAILURES, id=run_id)["logsForRun"].get("events", [])
        failures = [
            e.get("error", {}).get("message") or e.get("message")
            for e in events
            if "Failure" in e["__typename"]
        ]
        pytest.fail(f"run {run_id} ended {status}: {failures}\n{processes.diagnostics()}")


@pytest.mark.slow(minutes=2.5)
def test_the_compose_processes_run_the_pipeline_on_postgres_and_serve_the_model(
    tmp_path, databases, processes
):
    started = time.monotonic()
    laps: dict[str, float] = {}

    def lap(name: str) -> None:
        laps[name] = time.monotonic() - started - sum(laps.values())

    token = uuid.uuid4().hex
    ports = {4000: free_port(), 3000: free_port(), 5000: free_port(), 8000: free_port()}
    aq_home, dagster_home = tmp_path / "aq", tmp_path / "dagster_home"
    storage, artifacts = tmp_path / "dagster_storage", tmp_path / "mlartifacts"
    for directory in (aq_home, dagster_home, storage, artifacts):
        directory.mkdir()
    # The production instance config, as the image bakes it in; the workspace pointing at the
    # code server here instead of at its compose host name.
    shutil.copyfile(DEPLOY / "dagster.yaml", dagster_home / "dagster.yaml")
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    (grpc,) = (entry["grpc_server"] for entry in workspace["load_from"])
    assert (grpc["host"], grpc["port"], grpc["location_name"]) == ("code-server", 4000, "aq")
    grpc.update(host="127.0.0.1", port=ports[4000])
    workspace_file = tmp_path / "workspace.yaml"
    workspace_file.write_text(yaml.safe_dump(workspace))

    # What .env would hold, and what the Dockerfile sets in the image.
    dotenv = {
        **env_example(),
        **databases.values,
        "POSTGRES_PASSWORD": "unused-here",
        "AQ_API_TOKEN": token,
        "AQ_SOURCE": "simulated",
        "AQ_LOCATIONS": LOCATIONS,
        "AQ_START_DATE": "2025-04-01",
    }
    dockerfile = (REPO / "Dockerfile").read_text()
    image_env = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
        "OMP_NUM_THREADS": "1",
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_STORAGE_DIR": str(storage),
        "DAGSTER_COMPUTE_LOGS_DIR": str(storage / "compute_logs"),
        "AQ_HOME": str(aq_home),
    }
    for name in (
        "OMP_NUM_THREADS",
        "DAGSTER_HOME",
        "DAGSTER_STORAGE_DIR",
        "DAGSTER_COMPUTE_LOGS_DIR",
        "AQ_HOME",
    ):
        assert f"{name}=" in dockerfile, f"the Dockerfile does not set {name}"
    mlflow_url = f"http://127.0.0.1:{ports[5000]}"
    # Compose host names and container paths, as they are on this machine.
    here = {
        "DAGSTER_PG_HOST": PG_HOST,
        "DAGSTER_PG_PORT": str(PG_PORT),
        "MLFLOW_PG_HOST": PG_HOST,
        "MLFLOW_PG_PORT": str(PG_PORT),
        "MLFLOW_TRACKING_URI": mlflow_url,
        "MLFLOW_ARTIFACTS_DESTINATION": str(artifacts),
        "AQ_HOME": str(aq_home),
        "AQ_WAREHOUSE_URL": (
            f"postgresql://{databases.values['WAREHOUSE_PG_USER']}@{PG_HOST}:{PG_PORT}/"
            f"{databases.values['WAREHOUSE_PG_DB']}"
        ),
    }

    def service(name: str, port: int | None, extra: Mapping[str, str] | None = None):
        spec = compose_service(name, dotenv)
        overrides = {k: v for k, v in here.items() if k in spec.environment}
        env = {**image_env, **spec.environment, **overrides, **(extra or {})}
        replacements = {"0.0.0.0": "127.0.0.1", "/opt/dagster/workspace.yaml": str(workspace_file)}
        if port is not None:
            replacements[str(port)] = str(ports[port])
        return localize(spec.command, replacements), localize(spec.healthcheck, replacements), env

    # Postgres is up (the fixture); MLflow and the code server start together, as in compose.
    # (one MLflow worker instead of compose's two: this machine has two cores for everything)
    mlflow_cmd, mlflow_health, mlflow_env = service(
        "mlflow",
        5000,
        {"MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(ports[5000]), "MLFLOW_WORKERS": "1"},
    )
    processes.start("mlflow", mlflow_cmd, mlflow_env)
    code_cmd, code_health, code_env = service("code-server", 4000)
    assert code_env["MLFLOW_TRACKING_URI"] == mlflow_url and code_env["AQ_SOURCE"] == "simulated"
    processes.start("code-server", code_cmd, code_env)
    wait_until("the code server's health check", healthy(code_health, code_env), processes, 120)
    web_cmd, web_health, web_env = service("webserver", 3000)
    processes.start("webserver", web_cmd, web_env)
    wait_until("the webserver's health check", healthy(web_health, web_env), processes, 120)
    daemon_cmd, daemon_health, daemon_env = service("daemon", None)
    processes.start("daemon", daemon_cmd, daemon_env)
    wait_until(
        "the MLflow server's health check", healthy(mlflow_health, mlflow_env), processes, 120
    )
    wait_until("the daemon's liveness check", healthy(daemon_health, daemon_env), processes, 120, 3)
    lap("processes up")

    gql = GraphQL(f"http://127.0.0.1:{ports[3000]}/graphql")
    deadline = time.monotonic() + DEADLINE_S

    def remaining() -> float:
        return max(1.0, deadline - time.monotonic())

    # Register the simulated sensors, then backfill every sensor over DAYS days, by key.
    catalog_run = launch_run(gql, "catalog_job")
    wait_for_run(gql, catalog_run, processes, remaining())
    lap("catalog_job")
    dimensions = gql(SENSOR_KEYS)["assetNodeOrError"]["partitionKeysByDimension"]
    sensors = next(d["partitionKeys"] for d in dimensions if d["name"] == "sensor")
    assert len(sensors) == SENSORS, sensors
    days = [FIRST_DAY + dt.timedelta(days=i) for i in range(DAYS)]
    keys = [f"{day}|{sensor}" for day in days for sensor in sensors]
    backfill = gql(
        LAUNCH_BACKFILL,
        params={
            "assetSelection": [{"path": ["raw_readings"]}],
            "partitionNames": keys,
            "title": "topology test",
        },
    )["launchPartitionBackfill"]
    assert backfill["__typename"] == "LaunchBackfillSuccess", backfill
    backfill_id = backfill["backfillId"]

    def backfill_done() -> dict[str, Any] | None:
        state = gql(BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]
        return state if state["status"] in TERMINAL_BACKFILL else None

    state = wait_until(f"backfill {backfill_id}", backfill_done, processes, remaining(), 2)
    assert state["status"] == "COMPLETED_SUCCESS", f"{state}\n{processes.diagnostics()}"
    assert state["numPartitions"] == len(keys)
    lap(f"backfill of {len(keys)} sensor-days")

    # Train, judge and promote, small enough for two cores.
    train_run = launch_run(gql, "train_job", TRAIN_CONFIG)
    wait_for_run(gql, train_run, processes, remaining())
    lap("train_job")

    # The runs and their events are in the Dagster database, not in sqlite under DAGSTER_HOME.
    import psycopg2

    with (
        contextlib.closing(psycopg2.connect(**databases.dsn("dagster"))) as con,
        con.cursor() as cur,
    ):
        cur.execute("SELECT run_id, pipeline_name, status FROM runs")
        runs = {run_id: (job, status) for run_id, job, status in cur.fetchall()}
        cur.execute(
            "SELECT run_id FROM run_tags WHERE key = 'dagster/backfill' AND value = %s",
            [backfill_id],
        )
        backfill_runs = [run_id for (run_id,) in cur.fetchall()]
        cur.execute(
            "SELECT count(DISTINCT partition) FROM event_logs "
            "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s",
            ['["raw_readings"]'],
        )
        (materialized,) = cur.fetchone()
        cur.execute("SELECT status FROM bulk_actions WHERE key = %s", [backfill_id])
        (backfill_status,) = cur.fetchone()
        cur.execute("SELECT count(*) FROM dynamic_partitions WHERE partitions_def_name = 'sensor'")
        (registered,) = cur.fetchone()
        cur.execute("SELECT \"limit\" FROM concurrency_limits WHERE concurrency_key = 'duckdb'")
        pool_limits = cur.fetchall()
    # Other runs (automation reacting to the new model) may be under way; ours are done.
    assert runs[catalog_run] == ("catalog_job", "SUCCESS")
    assert runs[train_run] == ("train_job", "SUCCESS")
    assert 1 <= len(backfill_runs) < len(keys)  # the backfill policy batches sensor-days
    assert {runs[run_id][1] for run_id in backfill_runs} == {"SUCCESS"}
    assert materialized == len(keys)
    assert backfill_status == "COMPLETED_SUCCESS"
    assert registered == len(sensors)
    assert pool_limits == []  # PostgreSQL's writers take no duckdb pool slot: side by side
    assert not list(dagster_home.glob("**/*.db")), "the instance fell back to sqlite"

    # The runs executed in the code server's process tree, writing the PostgreSQL warehouse.
    with (
        contextlib.closing(psycopg2.connect(**databases.dsn("warehouse"))) as con,
        con.cursor() as cur,
    ):
        cur.execute(
            "SELECT count(DISTINCT (sensor_id, date_trunc('day', datetime_utc))), "
            "count(*) - count(DISTINCT (sensor_id, datetime_utc)) FROM ingest.raw_readings"
        )
        sensor_days, duplicates = cur.fetchone()
    assert (sensor_days, duplicates) == (len(keys), 0)
    assert not (aq_home / "warehouse.duckdb").exists()

    # The model is in the MLflow server: registry and runs in Postgres, artifacts proxied to
    # the server's artifact store.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    champion = client.get_model_version_by_alias("aq-forecast", "champion")
    assert client.get_run(champion.run_id).data.tags["dagster_run_id"] == train_run
    assert any(artifacts.rglob("*")), "no artifact reached the server's artifact store"
    assert not (aq_home / "mlflow.db").exists() and not (aq_home / "mlartifacts").exists()
    with (
        contextlib.closing(psycopg2.connect(**databases.dsn("mlflow"))) as con,
        con.cursor() as cur,
    ):
        cur.execute("SELECT name, version FROM model_versions")
        assert ("aq-forecast", int(champion.version)) in cur.fetchall()
    # MLflow answers the compose host name the other services use, and refuses others.
    assert httpx.get(f"{mlflow_url}/health", headers={"Host": "mlflow:5000"}).status_code == 200
    assert (
        httpx.get(
            f"{mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1",
            headers={"Host": "evil.example"},
        ).status_code
        == 403
    )

    # The forecast service loads that version from the MLflow server and serves it.
    api_cmd, api_health, api_env = service("service", 8000)
    assert set(api_env) >= {"AQ_HOME", "MLFLOW_TRACKING_URI", "AQ_API_TOKEN"}
    processes.start("service", api_cmd, api_env)
    wait_until("the service's health check", healthy(api_health, api_env), processes, 120)
    api = f"http://127.0.0.1:{ports[8000]}"
    wait_until(
        "the service to be ready",
        lambda: httpx.get(f"{api}/readyz", timeout=30).status_code == 200,
        processes,
        120,
    )
    assert httpx.get(f"{api}/v1/model", timeout=30).status_code == 401
    response = httpx.get(
        f"{api}/v1/model", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    info = response.json()
    assert (info["name"], info["alias"], info["version"]) == (
        "aq-forecast",
        "champion",
        str(champion.version),
    )
    assert info["run_id"] == champion.run_id
    lap("checks and the service")
    print("\n" + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in laps.items()))
