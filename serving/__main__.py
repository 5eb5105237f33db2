"""`python -m serving`: the service under uvicorn, on AQ_API_HOST:AQ_API_PORT."""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

import serving  # noqa: F401  (sets OMP_NUM_THREADS before anything imports xgboost)
from serving.settings import get_settings


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    parser.add_argument("--host", help="default AQ_API_HOST (127.0.0.1)")
    parser.add_argument("--port", type=int, help="default AQ_API_PORT (8000)")
    parser.add_argument("--workers", type=int, default=1, help="processes (each loads the model)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:  # say what to set, not a traceback
        sys.exit(
            "\n".join(f"aq serving: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers,
        access_log=args.access_log,
        log_level="info",
    )


if __name__ == "__main__":
    main()
