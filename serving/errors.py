"""The one error type of request handling: what the answer's status and body say."""

from __future__ import annotations


class ApiError(Exception):
    """A request the service cannot answer: the status, and the field to blame (JSON path)."""

    def __init__(self, status: int, field: str, msg: str, kind: str) -> None:
        super().__init__(msg)
        self.status = status
        self.field = field
        self.msg = msg
        self.kind = kind
