"""Where configuration comes from: environment variables, resolved by Dagster's `EnvVar`.

A variable that is set is passed as `EnvVar(name)` (so the UI shows its name, not its value);
one that is unset falls back to the documented default. Every variable is listed in README.md
and `.env.example`.
"""

from __future__ import annotations

import os

from dagster import EnvVar


def env_or_default(name: str, default: str) -> str | EnvVar:
    """`EnvVar(name)` when the variable is set and non-empty, else `default`."""
    return EnvVar(name) if os.environ.get(name) else default


def env_value(name: str, default: str) -> str:
    """The variable's value now. Only for what must be known when the code location loads
    (partition start date, which source class to use); everything else goes through
    `env_or_default` so it is read at run time."""
    return os.environ.get(name) or default
