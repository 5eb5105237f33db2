"""aq's MLflow resource beside dagster-mlflow's `mlflow_tracking`: what the integration does
that keeps it out of the code location. When one of the `upstream` tests fails, dagster-mlflow
has changed and `MLflowTracking` may give way to it."""

import json
import subprocess
import sys

import mlflow
from dagster import AssetExecutionContext, asset, materialize

from aq_assets.defs.model.tracking import MLflowTracking

UPSTREAM_TWO_RUNS = """
import json, sys, warnings
warnings.simplefilter("ignore")
import mlflow
from dagster import asset, materialize
from dagster_mlflow import mlflow_tracking

resource = mlflow_tracking.configured(
    {"experiment_name": "upstream", "mlflow_tracking_uri": sys.argv[1]}
)

@asset(required_resource_keys={"mlflow"})
def model(context):
    context.resources.mlflow.log_metric("rmse", 1.0)

dagster_runs = [materialize([model], resources={"mlflow": resource}) for _ in range(2)]
assert all(result.success for result in dagster_runs)
runs = mlflow.search_runs(experiment_names=["upstream"], output_format="list")
print(json.dumps([[r.info.status, r.data.tags["dagster_run_id"]] for r in runs]
                 + [[result.run_id for result in dagster_runs]]))
"""


def test_upstream_leaves_its_mlflow_run_open_and_logs_two_dagster_runs_into_it(tmp_path):
    """Outside a job with its `end_mlflow_on_run_finished` hook (a UI materialization, every
    test), the run stays RUNNING, and the next Dagster run in the process takes it over."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run(
        [sys.executable, "-c", UPSTREAM_TWO_RUNS, uri],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )

    *runs, dagster_run_ids = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(dagster_run_ids) == 2
    assert runs == [["RUNNING", dagster_run_ids[1]]]


def test_upstream_imports_mlflow_which_the_code_location_must_not():
    """A hook or resource from dagster-mlflow in the definitions would import MLflow at every
    load (test_definitions keeps it out)."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, dagster_mlflow; print('mlflow' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "True"


def test_aq_closes_one_mlflow_run_per_dagster_run(tmp_path):
    tracking = MLflowTracking(aq_home=str(tmp_path), experiment="aq")

    @asset
    def model(context: AssetExecutionContext, mlflow_tracking: MLflowTracking) -> None:
        with mlflow_tracking.start_run("model", {"dagster_run_id": context.run.run_id}):
            mlflow.log_metric("rmse", 1.0)

    dagster_runs = [materialize([model], resources={"mlflow_tracking": tracking}) for _ in range(2)]

    client = tracking.client()
    experiment = client.get_experiment_by_name("aq")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert sorted((r.info.status, r.data.tags["dagster_run_id"]) for r in runs) == sorted(
        ("FINISHED", result.run_id) for result in dagster_runs
    )
