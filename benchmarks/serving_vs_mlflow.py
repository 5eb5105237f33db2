"""Requests/s and latency of the forecast service against `mlflow models serve`, same model.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serving_vs_mlflow.py \
        [--aq-home DIR] [--duration 10] [--warmup 2] [--concurrency 1,8,32] [--rounds 1]

Needs `wrk` (Debian: `apt-get install wrk`). Everything runs on 127.0.0.1.

Setup: an AQ_HOME with version 1 of `aq-forecast` as champion and the online_features
snapshot. Without `--aq-home` a temporary one is built with `aq up --no-ui --days 60` (60
simulated days, training, registration) and `dagster asset materialize --select
online_features`; with `--aq-home` whatever is missing there is built the same way.

Servers, all started by this script, all at once, each in its own process group (stopped at
the end, also on failure), all with OMP_NUM_THREADS=1:

- `mlflow models serve -m models:/aq-forecast/1 --env-manager local --workers N` (the peer;
  N=1 is its default and the reference of the ratios; 2 workers too, by default, for a
  same-workers comparison);
- `uvicorn serving.app:create_app --factory --workers N --no-access-log`, N = 1 and 2, with
  AQ_API_OPEN=true and AQ_API_POLL_SECONDS=0;
- unless `--no-floor`: `benchmarks/floor_app.py`, a FastAPI endpoint that reads the body and
  answers a constant, with the most workers, loaded with our POST bodies: the ceiling of any
  FastAPI service that reads such a body here.

Requests (every body is checked once for a 200 and numeric forecasts before it is loaded):

- mlflow `single`: POST /invocations, `dataframe_split` with one precomputed feature row of
  `training.training_set` (sensor_id, datetime_utc as a string, the signature's columns);
  `batch`: the same with 100 rows.
- ours `post-full`: POST /v1/forecast, one series: a pm25 sensor's last `history_hours`
  (GET /v1/model) hours of readings from the online_features snapshot, plus the same hours of
  every co-located parameter the model reads and the network (the other sensors' mean per
  hour, as the service computes it from the snapshot), as a client holding a network's data
  sends it; the service cleans it and computes the features. `post-target`: the same without the
  co-located parameters. `post-1h`: the last reading only (allowed; most features are then
  missing, so it is NOT the same forecast: it measures the fixed cost of a request, the
  closest to mlflow's precomputed row). `get`: GET /v1/sensors/{id}/forecast, the
  snapshot path (answers are cached per model and snapshot).
- ours `batch-full`: 100 series as in post-full (the 5 simulated pm25 sensors, cycled; 100 is
  AQ_API_MAX_SERIES' default); `batch-target`: 100 series as in post-target; `batch-1h`: 100
  series as in post-1h.

Before loading, post-full's forecast is compared with GET's for the same sensor (same
readings, so they should agree); the result is printed.

Load: wrk, closed loop, `--concurrency` connections (threads: 1 at c=1, else 2), a warm-up of
`--warmup` s (discarded), then `--duration` s (`--batch-duration` for batches); before the
warm-up and before the run, the script waits until every server is idle (CPU of their process
groups), since requests still in flight when wrk stops keep a server busy. Requests still in
flight at the end are not counted, so where p50 is a sizable share of the duration the
requests/s are a lower bound. Requests/s, p50 and p99 come from wrk's latency histogram (its
Lua `done` hook). Any non-2xx answer, socket error or timeout is counted and shown. The order
is interleaved, per round and concurrency: the mlflow servers, then ours, request kind by
request kind, so machine noise hits all alike; ratios are ours/mlflow (1 worker) and
ours/mlflow with as many workers, at the same concurrency. With `--rounds` > 1 the medians
over rounds are shown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from aq_assets.ml.cleaning import HourlySeries
from aq_assets.ml.features import NETWORK

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODEL = "aq-forecast"
SNAPSHOT = "online_features.parquet"
BATCH = 100

LUA = """\
wrk.method = "{method}"
{body}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {{\\"requests\\":%d,\\"duration_us\\":%d,\\"p50_us\\":%d,\\"p99_us\\":%d,"
    .. "\\"max_us\\":%d,\\"connect\\":%d,\\"read\\":%d,\\"write\\":%d,\\"status\\":%d,"
    .. "\\"timeout\\":%d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""
LUA_BODY = """\
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("{path}", "rb"))
wrk.body = f:read("*a")
f:close()"""


# ---- setup -----------------------------------------------------------------------------


def run(command: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({' '.join(command)}):\n{done.stderr[-3000:]}")


def prepare_home(home: Path, base_env: dict[str, str]) -> None:
    env = {**base_env, "AQ_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    if not (home / "mlflow.db").exists():
        print(f"building {home}: aq up --no-ui --days 60", flush=True)
        run([str(BIN / "aq"), "up", "--no-ui", "--days", "60"], env, "aq up")
    if not (home / SNAPSHOT).exists():
        print("materializing online_features", flush=True)
        run(
            [
                str(BIN / "dagster"),
                "asset",
                "materialize",
                "-m",
                "aq_assets.definitions",
                "--select",
                "online_features",
            ],
            env,
            "online_features",
        )


# ---- request bodies ---------------------------------------------------------------------


def mlflow_bodies(home: Path, tracking_uri: str) -> dict[str, bytes]:
    """`dataframe_split` bodies of 1 and BATCH precomputed feature rows, in the signature's
    column order."""
    from mlflow.models import get_model_info

    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    columns = get_model_info(f"models:/{MODEL}/1").signature.inputs.input_names()
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        frame = con.execute("SELECT * FROM training.training_set").df()
    finally:
        con.close()
    frame = frame[frame["level"].notna()].tail(BATCH).reset_index(drop=True)
    frame["datetime_utc"] = pd.to_datetime(frame["datetime_utc"]).dt.strftime("%Y-%m-%dT%H:%M:%S")
    frame = frame[columns].astype(object).where(frame[columns].notna(), None)
    rows = frame.values.tolist()
    rows = [[int(v) if isinstance(v, np.integer) else v for v in row] for row in rows]

    def body(data: list[list]) -> bytes:
        return json.dumps({"dataframe_split": {"columns": columns, "data": data}}).encode()

    return {"single": body(rows[-1:]), "batch": body(rows)}


def iso(times: pd.Series) -> list[str]:
    return pd.to_datetime(times).dt.strftime("%Y-%m-%dT%H:%M:%SZ").tolist()


def readings(frame: pd.DataFrame) -> dict[str, list]:
    values = frame["value"].astype(float)
    return {
        "timestamps": iso(frame["datetime_utc"]),
        "values": [None if np.isnan(v) else float(v) for v in values],
    }


def network_readings(
    network: HourlySeries | None, start: pd.Timestamp, last: pd.Timestamp
) -> dict[str, list]:
    """`covariates.network` as the service computes it from the snapshot (the other sensors'
    mean per hour), over the body's hours; empty for a sensor with no neighbours."""
    if network is None:
        return {"timestamps": [], "values": []}
    hours = pd.to_datetime(network.hours.astype("datetime64[h]"))
    keep = (hours >= start.floor("h")) & (hours <= last)
    return {
        "timestamps": iso(pd.Series(hours[keep])),
        "values": [None if np.isnan(v) else float(v) for v in network.values[keep]],
    }


def our_bodies(home: Path, model_info: dict) -> tuple[dict[str, bytes], list[int]]:
    """POST bodies (see the module docstring) and the pm25 sensor ids of the snapshot."""
    from serving.snapshot import OnlineSnapshot  # the service's own reading of it

    snapshot = pd.read_parquet(home / SNAPSHOT)
    snapshot["datetime_utc"] = pd.to_datetime(snapshot["datetime_utc"])
    parameter = model_info["parameter"]
    hours = int(model_info["history_hours"])
    targets = snapshot[snapshot["parameter"] == parameter]
    sensors = sorted(int(s) for s in targets["sensor_id"].unique())
    networks = (
        {
            sensor: history.covariates.get(NETWORK)
            for sensor, history in OnlineSnapshot.load(home / SNAPSHOT).history.sensors.items()
        }
        if NETWORK in model_info["covariates"]
        else {}
    )
    full, target_only, one_hour = [], [], []
    for sensor in sensors:
        mine = targets[targets["sensor_id"] == sensor].sort_values("datetime_utc")
        last = mine["datetime_utc"].max()
        start = last.floor("h") - pd.Timedelta(hours=hours - 1)
        window = mine[mine["datetime_utc"] >= start]
        location = int(mine["location_id"].iloc[0])
        base = {
            "sensor_id": sensor,
            "timezone": str(mine["timezone"].iloc[0]),
        }
        others = snapshot[
            (snapshot["location_id"] == location)
            & (snapshot["parameter"].isin(model_info["covariates"]))
            & (snapshot["datetime_utc"] >= start)
            & (snapshot["datetime_utc"] <= last)
        ]
        covariates = {
            str(p): readings(g.sort_values("datetime_utc"))
            for p, g in others.groupby("parameter", sort=True)
        }
        if NETWORK in model_info["covariates"]:
            covariates[NETWORK] = network_readings(networks.get(sensor), start, last)
        target_only.append({**base, **readings(window)})
        full.append({**target_only[-1], "covariates": covariates})
        one_hour.append({**base, **readings(mine.tail(1))})

    def body(series: list[dict]) -> bytes:
        return json.dumps({"series": series}, separators=(",", ":")).encode()

    def cycled(series: list[dict]) -> list[dict]:
        return [series[i % len(series)] for i in range(BATCH)]

    bodies = {
        "post-full": body(full[:1]),
        "post-target": body(target_only[:1]),
        "post-1h": body(one_hour[:1]),
        "batch-full": body(cycled(full)),
        "batch-target": body(cycled(target_only)),
        "batch-1h": body(cycled(one_hour)),
    }
    return bodies, sensors


# ---- servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    ready_path: str
    log: Path
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: workers die with it
            )

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise SystemExit(f"{self.name} not ready in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


@contextmanager
def servers(items: list[Server]) -> Iterator[list[Server]]:
    try:
        for server in items:
            server.port = free_port()
            server.command = [part.replace("{port}", str(server.port)) for part in server.command]
            server.start()
        for server in items:
            server.wait_ready()
        yield items
    finally:
        for server in items:
            server.stop()


def cpu_seconds(groups: set[int]) -> float:
    """CPU time (user + system) of every live process in these process groups."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups:  # pgrp; utime and stime follow at 11 and 12
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_idle(servers: list[Server], timeout: float = 180) -> float:
    """Wait until no server burns CPU (< 5% of a core over 0.5 s): a closed wrk run leaves
    requests in flight that the servers still compute, which must not bleed into the next
    run. Returns the seconds waited."""
    groups = {s.process.pid for s in servers if s.process is not None}
    start = time.monotonic()
    before = cpu_seconds(groups)
    while time.monotonic() - start < timeout:
        time.sleep(0.5)
        now = cpu_seconds(groups)
        if now - before < 0.025:
            return time.monotonic() - start
        before = now
    print(f"  warning: servers still busy after {timeout:.0f} s", flush=True)
    return timeout


def post(url: str, body: bytes | None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST" if body else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"error": exc.read().decode()[:2000]}


def check_mlflow(server: Server, body: bytes, rows: int) -> None:
    status, answer = post(server.url + "/invocations", body)
    predictions = answer.get("predictions") if status == 200 else None
    if not predictions or len(predictions) != rows:
        raise SystemExit(f"{server.name}: {status} {str(answer)[:2000]}")
    values = [v for row in predictions for v in row.values()]
    if not all(isinstance(v, float) and np.isfinite(v) for v in values):
        raise SystemExit(f"{server.name}: non-numeric forecasts {predictions[:2]}")


def check_ours(server: Server, kind: str, body: bytes | None, path: str) -> None:
    status, answer = post(server.url + path, body)
    if status != 200:
        raise SystemExit(f"{server.name} {kind}: {status} {str(answer)[:2000]}")
    results = answer.get("results", [answer])
    expected = BATCH if kind.startswith("batch") else 1
    values = [f["value"] for r in results for f in r["forecasts"]]
    if len(results) != expected or not values or not all(isinstance(v, float) for v in values):
        raise SystemExit(f"{server.name} {kind}: non-numeric answer {str(answer)[:2000]}")


def same_forecast(server: Server, body: bytes, sensor: int) -> str:
    """Whether post-full's forecast equals GET's for the same sensor (same readings)."""
    _, posted = post(server.url + "/v1/forecast", body)
    _, got = post(server.url + f"/v1/sensors/{sensor}/forecast", None)
    a = [f["value"] for f in posted["results"][0]["forecasts"]]
    b = [f["value"] for f in got["forecasts"]]
    diff = max(abs(x - y) for x, y in zip(a, b, strict=True))
    origins = (posted["results"][0]["origin_utc"], got["origin_utc"])
    verdict = "equal" if diff <= 1e-9 and origins[0] == origins[1] else "DIFFERENT"
    return (
        f"post-full vs get, sensor {sensor}: {verdict} (max |diff| {diff:.2g}, origin {origins[0]})"
    )


# ---- load -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    server: str
    kind: str
    group: str  # "single" or "batch": which mlflow request it is compared with
    url: str
    script: Path
    body_bytes: int


@dataclass
class Result:
    requests_per_s: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    errors: int = 0
    requests: int = 0


def wrk(target: Target, connections: int, seconds: float) -> dict:
    threads = 1 if connections == 1 else 2
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "--latency",
        "-s",
        str(target.script),
        target.url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    for line in done.stdout.splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line.removeprefix("WRKJSON "))
    raise SystemExit(f"wrk gave no summary: {done.stdout[-2000:]} {done.stderr[-2000:]}")


def lua_script(directory: Path, name: str, body: bytes | None) -> Path:
    script = directory / f"{name}.lua"
    if body is None:
        script.write_text(LUA.format(method="GET", body=""))
    else:
        path = directory / f"{name}.json"
        path.write_bytes(body)
        script.write_text(LUA.format(method="POST", body=LUA_BODY.format(path=path)))
    return script


# ---- main -------------------------------------------------------------------------------


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--aq-home", help="reuse (and complete) this AQ_HOME")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument(
        "--batch-duration", type=float, default=20.0, help="seconds per load run of batches"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each run")
    parser.add_argument("--concurrency", type=ints, default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=ints, default=[1, 2], help="our uvicorn workers")
    parser.add_argument("--mlflow-workers", type=ints, default=[1, 2])
    parser.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also load benchmarks/floor_app.py (reads the body, answers a constant) with "
        "our POST bodies and the most workers: the ceiling of any FastAPI service here",
    )
    parser.add_argument(
        "--kinds",
        default="post-full,post-target,post-1h,get,batch-full,batch-target,batch-1h",
        help="our request kinds to measure",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk")
    if 1 not in args.mlflow_workers:
        raise SystemExit("--mlflow-workers must include 1 (the reference of the ratios)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks

    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AQ_", "MLFLOW_"))}
    base_env["OMP_NUM_THREADS"] = "1"
    # mlflow serve runs `uvicorn` from PATH: this venv's
    base_env["PATH"] = f"{BIN}{os.pathsep}{base_env.get('PATH', '')}"
    work = Path(tempfile.mkdtemp(prefix="aq-serving-bench-"))
    home = Path(args.aq_home).resolve() if args.aq_home else work / "home"
    home.mkdir(parents=True, exist_ok=True)
    prepare_home(home, base_env)
    tracking_uri = f"sqlite:///{home / 'mlflow.db'}"

    env = {**base_env, "AQ_HOME": str(home), "MLFLOW_TRACKING_URI": tracking_uri}
    ours_env = {**env, "AQ_API_OPEN": "true", "AQ_API_POLL_SECONDS": "0"}
    items = [
        Server(
            f"mlflow-w{n}",
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{MODEL}/1",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                "{port}",
                "--workers",
                str(n),
            ],
            env,
            "/ping",
            work / f"mlflow-w{n}.log",
        )
        for n in args.mlflow_workers
    ] + [
        Server(
            f"ours-w{n}",
            [
                str(BIN / "uvicorn"),
                "serving.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "--workers",
                str(n),
                "--no-access-log",
            ],
            ours_env,
            "/readyz",
            work / f"ours-w{n}.log",
        )
        for n in args.workers
    ]
    if args.floor:
        n = max(args.workers)
        floor = [str(BIN / "uvicorn"), "floor_app:app", "--app-dir", str(Path(__file__).parent)]
        floor += ["--host", "127.0.0.1", "--port", "{port}", "--workers", str(n)]
        items.append(
            Server(
                f"floor-w{n}",
                [*floor, "--no-access-log"],
                env,
                "/readyz",
                work / "floor.log",
            )
        )
    kinds = [k for k in args.kinds.split(",") if k]
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = os.getloadavg()
    results: dict[tuple[str, str, int], Result] = {}
    try:
        with servers(items) as running:
            mlflow_servers = [s for s in running if s.name.startswith("mlflow")]
            our_servers = [s for s in running if s.name.startswith("ours")]
            _, info = post(our_servers[0].url + "/v1/model", None)
            if info.get("version") != "1":
                raise SystemExit(f"our service serves {info.get('version')}, not version 1")
            ml_bodies = mlflow_bodies(home, tracking_uri)
            bodies, sensors = our_bodies(home, info)
            parity = same_forecast(our_servers[0], bodies["post-full"], sensors[0])
            scripts = work / "lua"
            scripts.mkdir()
            targets: list[Target] = []
            for server in mlflow_servers:
                for kind, body in ml_bodies.items():
                    check_mlflow(server, body, 1 if kind == "single" else BATCH)
                    script = lua_script(scripts, f"mlflow-{kind}", body)
                    url = server.url + "/invocations"
                    targets.append(Target(server.name, kind, kind, url, script, len(body)))
            for server in our_servers:
                for kind in kinds:
                    group = "batch" if kind.startswith("batch") else "single"
                    payload: bytes | None = None
                    path = f"/v1/sensors/{sensors[0]}/forecast"
                    if kind != "get":
                        payload, path = bodies[kind], "/v1/forecast"
                    check_ours(server, kind, payload, path)
                    script = lua_script(scripts, f"ours-{kind}", payload)
                    size = len(payload) if payload else 0
                    targets.append(
                        Target(server.name, kind, group, server.url + path, script, size)
                    )
            for server in [s for s in running if s.name.startswith("floor")]:
                for kind in kinds:
                    if kind == "get":
                        continue
                    group = "batch" if kind.startswith("batch") else "single"
                    script = scripts / f"ours-{kind}.lua"  # the same body
                    url = server.url + "/v1/forecast"
                    targets.append(Target(server.name, kind, group, url, script, len(bodies[kind])))
            order = sorted(targets, key=lambda t: (t.group != "single", t.server, t.kind))
            runs = len(order) * len(args.concurrency) * args.rounds
            per_c = sum(
                (args.batch_duration if t.group == "batch" else args.duration) + args.warmup
                for t in order
            )
            eta = per_c * len(args.concurrency) * args.rounds / 60
            print(f"{runs} load runs, about {eta:.0f} min", flush=True)
            for round_no in range(args.rounds):
                for c in args.concurrency:
                    for target in order:
                        seconds = args.batch_duration if target.group == "batch" else args.duration
                        if args.warmup > 0:
                            wait_idle(running)
                            wrk(target, c, args.warmup)
                        wait_idle(running)
                        out = wrk(target, c, seconds)
                        key = (target.server, target.kind, c)
                        r = results.setdefault(key, Result())
                        seconds = out["duration_us"] / 1e6
                        r.requests_per_s.append(out["requests"] / seconds)
                        r.p50_ms.append(out["p50_us"] / 1000)
                        r.p99_ms.append(out["p99_us"] / 1000)
                        r.requests += out["requests"]
                        r.errors += sum(
                            out[k] for k in ("connect", "read", "write", "status", "timeout")
                        )
                        print(
                            f"  round {round_no + 1} c={c:<2} {target.server:<9} "
                            f"{target.kind:<11} {r.requests_per_s[-1]:9.1f} req/s "
                            f"p50 {r.p50_ms[-1]:8.2f} ms p99 {r.p99_ms[-1]:8.2f} ms",
                            flush=True,
                        )
    finally:
        for server in items:
            server.stop()
    report(args, targets, results, started, load_before, sensors, parity)
    shutil.rmtree(work, ignore_errors=True)  # kept on failure, for the servers' logs


def report(
    args: argparse.Namespace,
    targets: list[Target],
    results: dict[tuple[str, str, int], Result],
    started: str,
    load_before: tuple[float, float, float],
    sensors: list[int],
    parity: str,
) -> None:
    med = statistics.median
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, mlflow {version('mlflow')}, fastapi {version('fastapi')}, "
        f"uvicorn {version('uvicorn')}, xgboost {version('xgboost')}, "
        f"{wrk_version.split(' Copyright')[0].strip()}; started {started}, load average "
        f"before {load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f}"
    )
    print(
        f"wrk closed loop, {args.warmup:g} s warm-up + {args.duration:g} s per run "
        f"({args.batch_duration:g} s for batches), servers idle before each, "
        f"rounds {args.rounds}{' (medians)' if args.rounds > 1 else ''}; OMP_NUM_THREADS=1; "
        f"GET sensor {sensors[0]}"
    )
    print(parity)
    print()
    header = (
        "| server | request | body | c | req/s | p50 ms | p99 ms | × mlflow-w1 "
        "| × mlflow, same workers | errors |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))

    def ratio(r: Result, peer: Result | None) -> str:
        if peer is None or not r.requests_per_s:
            return "-"
        return f"{med(r.requests_per_s) / med(peer.requests_per_s):.1f}×"

    seen = set()
    for group in ("single", "batch"):
        for target in targets:
            if target.group != group or (target.server, target.kind) in seen:
                continue
            seen.add((target.server, target.kind))
            workers = target.server.rsplit("-w", 1)[1]
            for c in args.concurrency:
                r = results.get((target.server, target.kind, c))
                if r is None:
                    continue
                peer = results.get(("mlflow-w1", group, c))
                same = results.get((f"mlflow-w{workers}", group, c))
                size = f"{target.body_bytes / 1024:,.1f} KiB" if target.body_bytes else "-"
                print(
                    f"| {target.server} | {target.kind} | {size} | {c} | "
                    f"{med(r.requests_per_s):,.0f} | {med(r.p50_ms):.2f} | {med(r.p99_ms):.2f} | "
                    f"{ratio(r, peer)} | {ratio(r, same)} | {r.errors}/{r.requests} |"
                )

    c = 8
    if ("mlflow-w1", "single", c) not in results:
        return
    print()
    print(f"goals at c={c} (vs mlflow-w1): single ≥ 10× and p99 < 10 ms; 100-row batch ≥ 5×")
    for (server, kind, conc), r in results.items():
        if conc != c or not server.startswith("ours"):
            continue
        group = "batch" if kind.startswith("batch") else "single"
        mlflow = med(results[("mlflow-w1", group, c)].requests_per_s)
        times = med(r.requests_per_s) / mlflow
        if group == "single":
            ok = times >= 10 and med(r.p99_ms) < 10
            need = f"{times:.1f}×, p99 {med(r.p99_ms):.2f} ms"
        else:
            ok = times >= 5
            need = f"{times:.1f}×"
        floor = next(
            (
                f
                for (name, k, cc), f in results.items()
                if name.startswith("floor") and k == kind and cc == c
            ),
            None,
        )
        ceiling = (
            f" (an endpoint that only reads this body: {med(floor.requests_per_s) / mlflow:.1f}×)"
            if floor
            else ""
        )
        print(f"  {server} {kind}: {need} -> {'met' if ok else 'NOT met'}{ceiling}")


if __name__ == "__main__":
    main()
