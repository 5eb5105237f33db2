"""The one error type of request handling: what the answer's status and body say."""

from __future__ import annotations

import re


class ApiError(Exception):
    """A request the service cannot answer: the status, and the field to blame (JSON path)."""

    def __init__(self, status: int, field: str, msg: str, kind: str) -> None:
        super().__init__(msg)
        self.status = status
        self.field = field
        self.msg = msg
        self.kind = kind


def invalid(message: str, under: str = "") -> ApiError:
    """A msgspec ValidationError ("Expected `int` >= 0 - at `$.series[0].sensor_id`") as a 422
    naming the field as a JSON path; `under`: the path of what was decoded."""
    message, _, where = message.partition(" - at ")
    at = where.rpartition("`$")[2].rstrip("`").lstrip(".")
    field = re.search(r"field `([^`]*)`", message)
    kind = "value_error"
    if message.startswith(("Object missing required field", "Object contains unknown field")):
        kind = "missing" if "missing" in message else "extra_forbidden"
        at = f"{at}.{field.group(1)}" if at and field else (field.group(1) if field else at)
    elif message.startswith("Expected `") and ", got `" in message:
        kind = "type_error"
    if under:
        at = f"{under}{'' if not at or at.startswith('[') else '.'}{at}"
    return ApiError(422, at or "body", message, kind)
