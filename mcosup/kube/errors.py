"""One error taxonomy and one retry policy for every call to the API server.

Errors are built from the server's ``Status`` body so callers branch on a class, never on a code. The
retry policy is the only place that decides what is worth trying again and how long to wait.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from typing import Any, TypeGuard

import orjson


class ApiError(Exception):
    """The API server answered with an error (or could not be reached: status 0)."""

    def __init__(self, status: int, reason: str, message: str, body: Mapping[str, Any] | None = None):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = dict(body or {})


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """A stale resourceVersion (or any other 409)."""


class AlreadyExists(Conflict):
    pass


class Gone(ApiError):
    """The requested resourceVersion is too old: relist."""


class UnsupportedMediaType(ApiError):
    pass


class Invalid(ApiError):
    """422: the object failed validation; the message names the field."""


class TooManyRequests(ApiError):
    """429: throttled, or an eviction a PodDisruptionBudget forbids right now."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        body: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(status, reason, message, body)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx, including an admission webhook that failed with failurePolicy Fail."""


class ConnectionFailed(ApiError):
    """No HTTP answer at all: refused, reset, timed out."""

    def __init__(self, message: str):
        super().__init__(0, "ConnectionFailed", message)


def transient(error: BaseException) -> TypeGuard[ApiError]:
    """A failure that says nothing about the request itself (throttled, a server error, no answer at
    all): the same request sent again later is the whole fix, and nobody needs to be told."""
    return isinstance(error, TooManyRequests | ConnectionFailed) or (
        isinstance(error, ApiError) and error.status in (500, 502, 503, 504)
    )


def bad_kubeconfig(message: str) -> ApiError:
    """The client configuration cannot be used (status 0); the message names the file, field and fix."""
    return ApiError(0, "BadKubeconfig", message)


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    415: UnsupportedMediaType,
    422: Invalid,
    429: TooManyRequests,
}


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: the API server never sends it; fall back to our backoff.


def from_status(status: int, body: bytes | Mapping[str, Any], retry_after: str | None = None) -> ApiError:
    """Turn an error answer into the matching exception class."""
    parsed: Mapping[str, Any] = {}
    if isinstance(body, Mapping):
        parsed = body
    elif body:
        try:
            loaded = orjson.loads(body)
            if isinstance(loaded, dict):
                parsed = loaded
        except orjson.JSONDecodeError:
            parsed = {"message": body[:500].decode("utf-8", "replace")}
    reason = str(parsed.get("reason") or "")
    message = str(parsed.get("message") or "")
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExists(status, reason, message, parsed)
    if status == 429:
        return TooManyRequests(status, reason, message, parsed, retry_after=parse_retry_after(retry_after))
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return cls(status, reason, message, parsed)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter; Retry-After wins when the server gives one."""

    #: Attempts in all, the first included.
    attempts: int = 6
    #: Seconds before the second attempt, doubled each time.
    base: float = 0.2
    #: No single wait exceeds this many seconds.
    cap: float = 10.0

    def retryable(self, error: ApiError, method: str) -> bool:
        if isinstance(error, TooManyRequests):
            return True  # the request was not processed
        if method == "POST":
            # A create may have happened before the answer was lost; retrying could create twice
            # (generateName). 503 and refused connections mean it never reached storage.
            return error.status == 503 or (isinstance(error, ConnectionFailed) and "refused" in error.message)
        return transient(error)

    def delay(self, error: ApiError, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt + 1`` (attempt counts from 1)."""
        if isinstance(error, TooManyRequests) and error.retry_after is not None:
            return min(error.retry_after, self.cap)
        return random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
