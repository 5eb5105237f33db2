"""The README's "Forecasts over HTTP" commands, run as written: start the service, then curl."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def readme_blocks(section: str) -> list[str]:
    """The bash blocks of a README section, as written."""
    text = (REPO / "README.md").read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return [part.split("```", 1)[0] for part in text.split("```bash\n")[1:]]


def test_the_service_commands_of_the_readme_work_as_written(store, tmp_path):
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8000)) == 0:
            pytest.fail(
                "Port 8000 is taken; the README's commands use it. Stop what listens there."
            )
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    # Every curl fails on an HTTP error and prints the status after the body.
    (tmp_path / ".curlrc").write_text(
        'fail-with-body\nsilent\nshow-error\nwrite-out = "\\n=== %{http_code}\\n"\n'
    )
    start, calls = readme_blocks("Forecasts over HTTP")
    export, run_service = start.splitlines()[:2]
    script = "\n".join(
        [
            "set -eu",
            export,
            f"{run_service.split('#')[0]} &",  # in the background: its comment cut
            "service=$!",
            "trap 'kill $service' EXIT",
            # until it is ready (a condition, bounded), as a user would wait for it
            "for _ in $(seq 600); do curl localhost:8000/readyz >/dev/null 2>&1 && break;"
            " kill -0 $service; sleep 0.2; done",
            calls,
        ]
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AQ_API", "MLFLOW_"))},
        "AQ_HOME": str(store.home),
        "HOME": str(tmp_path),
    }

    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.count("=== 200") == 3, done.stdout[-3000:]
    assert '"forecasts"' in done.stdout and '"version"' in done.stdout
