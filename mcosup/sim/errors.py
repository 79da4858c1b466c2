"""`Status` error bodies with the reasons and codes a real kube-apiserver uses.

Pure: builds dicts and exceptions, no I/O. Messages follow the apiserver's wording so that clients
which match on them (kubectl, client libraries, people reading logs) see the same text.
"""

from __future__ import annotations

from typing import Any

REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "code": code,
    }
    if reason:  # a bare error from the storage layer carries no reason, as on the real server
        body["reason"] = reason
    if details is not None:  # an empty StatusDetails is sent as {}
        body["details"] = details
    return body


class ApiStatusError(Exception):
    """An error the emulator answers with a `Status` body and the given HTTP code."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
        status_field: str = "Failure",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}
        self.status_field = status_field
        self.warnings: list[str] = []

    def body(self) -> dict[str, Any]:
        body = status_body(self.code, self.reason, self.message, self.details)
        body["status"] = self.status_field
        return body


def _details(resource: str, group: str, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": resource}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def qualified(resource: str, group: str) -> str:
    """`pods` or `machineconfigpools.machineconfiguration.openshift.io`, as the server names resources."""
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> ApiStatusError:
    return ApiStatusError(
        404, "NotFound", f'{qualified(resource, group)} "{name}" not found', _details(resource, group, name)
    )


def already_exists(resource: str, group: str, name: str) -> ApiStatusError:
    return ApiStatusError(
        409,
        "AlreadyExists",
        f'{qualified(resource, group)} "{name}" already exists',
        _details(resource, group, name),
    )


def conflict(resource: str, group: str, name: str, why: str | None = None) -> ApiStatusError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiStatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
        _details(resource, group, name),
    )


def invalid(kind: str, group: str, name: str, causes: list[dict[str, str]]) -> ApiStatusError:
    """422 Invalid; each cause has `field`, `reason` (FieldValueInvalid, ...) and `message`."""
    qualified_kind = f"{kind}.{group}" if group else kind
    # Like field.ErrorList.ToAggregate: the message names each distinct error once.
    rendered = list(
        dict.fromkeys(f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes)
    )
    joined = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    details: dict[str, Any] = {"kind": kind, "causes": causes}
    if name:  # omitted when empty, as Go's omitempty does
        details["name"] = name
    if group:
        details["group"] = group
    return ApiStatusError(422, "Invalid", f'{qualified_kind} "{name}" is invalid: {joined}', details)


def bad_request(message: str) -> ApiStatusError:
    return ApiStatusError(400, "BadRequest", message)


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiStatusError:
    return ApiStatusError(405, "MethodNotAllowed", message, {})


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiStatusError:
    return ApiStatusError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def expired(message: str) -> ApiStatusError:
    return ApiStatusError(410, "Expired", message)


def too_many_requests(
    message: str, causes: list[dict[str, str]] | None = None, retry_after: int | None = None
) -> ApiStatusError:
    details: dict[str, Any] | None = None
    headers: dict[str, str] = {}
    if causes or retry_after is not None:
        details = {}
        if causes:
            details["causes"] = causes
        if retry_after is not None:
            details["retryAfterSeconds"] = retry_after
            headers["Retry-After"] = str(retry_after)
    return ApiStatusError(429, "TooManyRequests", message, details, headers=headers)


def forbidden(message: str, resource: str = "", group: str = "", name: str = "") -> ApiStatusError:
    return ApiStatusError(403, "Forbidden", message, _details(resource, group, name) if resource else None)


def unauthorized() -> ApiStatusError:
    return ApiStatusError(401, "Unauthorized", "Unauthorized")


def storage(message: str) -> ApiStatusError:
    """A plain error of the storage layer: the real server answers 500 with no reason and no details."""
    return ApiStatusError(500, "", message)


def internal(message: str) -> ApiStatusError:
    return ApiStatusError(
        500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]}
    )
