"""Where configuration comes from: environment variables, resolved by Dagster's `EnvVar`.

A variable that is set is passed as `EnvVar(name)` (so the UI shows its name, not its value);
one that is unset falls back to the documented default. Every variable is listed in README.md
and `.env.example`.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re

from dagster import EnvVar


def env_or_default(name: str, default: str) -> str | EnvVar:
    """`EnvVar(name)` when the variable is set and non-empty, else `default`."""
    return EnvVar(name) if os.environ.get(name) else default


def env_value(name: str, default: str) -> str:
    """The variable's value now. Only for what must be known when the code location loads
    (partition start date, which source class to use); everything else goes through
    `env_or_default` so it is read at run time."""
    return os.environ.get(name) or default


class SettingError(ValueError):
    """An environment variable whose value cannot be used; the message names it and the fix."""


def env_date(name: str, default: str = "") -> str:
    """The variable's value now (or `default`), checked to be a day written YYYY-MM-DD; ""
    when unset without a default."""
    raw = env_value(name, default).strip()
    if raw:
        try:
            if not _ISO_DAY.fullmatch(raw):
                raise ValueError
            dt.date.fromisoformat(raw)
        except ValueError:
            raise SettingError(
                f"{name}={raw!r} is not a day; set it as YYYY-MM-DD (for example 2025-01-31) "
                "or unset it."
            ) from None
    return raw


def env_number(name: str, default: str, minimum: float, *, whole: bool = False) -> float:
    """The variable's value now (or `default`), checked to be a finite number of at least
    `minimum`, and a whole one if `whole`."""
    raw = env_value(name, default).strip()
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= minimum) or (whole and not value.is_integer()):
        kind = "whole number" if whole else "number"
        raise SettingError(
            f"{name}={raw!r} is not a {kind} of at least {minimum:g}; set it to one (default "
            f"{default}) or unset it."
        )
    return value


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def sensor_interval_seconds() -> int:
    """How often the loop's sensors (declarative automation, retraining, alerts) evaluate:
    AQ_SENSOR_INTERVAL_SECONDS, default 30, Dagster's own default. Read when the code location
    loads."""
    raw = env_value("AQ_SENSOR_INTERVAL_SECONDS", "30")
    if not raw.isdigit() or int(raw) < 1:
        raise SettingError(
            f"AQ_SENSOR_INTERVAL_SECONDS={raw!r} is not a whole number of seconds of at least 1; "
            "set it to one (e.g. 30) or unset it for 30."
        )
    return int(raw)


# The first day partition when AQ_START_DATE is unset.
DEFAULT_START_DATE = "2025-01-01"


def newest_day(end_date: str | None) -> dt.date:
    """The newest complete UTC day: yesterday, or the day before `end_date` (AQ_END_DATE)."""
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    if not end_date:
        return yesterday
    return min(yesterday, dt.date.fromisoformat(end_date) - dt.timedelta(days=1))
