"""The one exception family of gridmap: a message for people, a status for HTTP, a line for the CLI."""

from __future__ import annotations

from typing import Any


class GridmapError(Exception):
    """Base error: `detail` is shown to the user as is; `status` maps it to HTTP."""

    status: int = 400
    title: str = "Bad request"
    headers: dict[str, str] | None = None  # extra HTTP headers (WWW-Authenticate on 401)

    def __init__(self, detail: str, *, hint: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint
        self.extra = extra

    def __str__(self) -> str:
        return f"{self.detail} ({self.hint})" if self.hint else self.detail


class InvalidInput(GridmapError):
    status = 422
    title = "Invalid input"


class NotFound(GridmapError):
    status = 404
    title = "Not found"


class Conflict(GridmapError):
    status = 409
    title = "Conflict"


class SetupError(GridmapError):
    """The environment cannot do the job (PostGIS missing, port busy, schema behind)."""

    status = 503
    title = "Service unavailable"


class DatabaseUnavailable(SetupError):
    title = "Database unavailable"


class PreconditionFailed(GridmapError):
    """The resource changed since the client read it (stale If-Match)."""

    status = 412
    title = "Precondition failed"


class PreconditionRequired(GridmapError):
    status = 428
    title = "Precondition required"


class PayloadTooLarge(GridmapError):
    status = 413
    title = "Content too large"


class Unauthorized(GridmapError):
    """No valid credentials: missing, expired, forged, or of a disabled account."""

    status = 401
    title = "Unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="gridmap"'}


class Forbidden(GridmapError):
    """Valid credentials, but the role may not use this function."""

    status = 403
    title = "Forbidden"


class TooManyRequests(GridmapError):
    """The caller has to wait (sign-in attempts from one address); `retry_after` in seconds."""

    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after)}
