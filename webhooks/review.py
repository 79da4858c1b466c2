"""AdmissionReview ``admission.k8s.io/v1``: the typed request, its strict parser, and the response builder.

Pure: no I/O. The HTTPS server hands the raw body to :func:`parse_review`; anything that is not a
well-formed AdmissionReview raises :class:`MalformedReview` with a reason the server returns as HTTP 400.
A well-formed review always gets a response that echoes its ``uid`` (the API server rejects any other).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict, cast

import orjson

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
OPERATIONS: frozenset[str] = frozenset(("CREATE", "UPDATE", "DELETE", "CONNECT"))


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class GroupVersionResource(TypedDict):
    group: str
    version: str
    resource: str


class UserInfo(TypedDict):
    username: str
    groups: list[str]
    extra: dict[str, list[str]]


class AdmissionRequest(TypedDict):
    """The fields of ``request`` a verdict reads, normalised: optional ones are present with defaults."""

    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource
    subResource: str
    name: str
    namespace: str
    operation: Operation
    userInfo: UserInfo
    object: dict[str, Any] | None
    oldObject: dict[str, Any] | None
    dryRun: bool


class Status(TypedDict):
    code: int
    message: str


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[Status]
    warnings: NotRequired[list[str]]


class AdmissionReviewResponse(TypedDict):
    apiVersion: str
    kind: str
    response: AdmissionResponse


class MalformedReview(ValueError):
    """The body is not an AdmissionReview v1 request; ``reason`` says what is wrong, for an HTTP 400."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a review. ``message`` is shown to the user on denial; ``warnings`` in both cases."""

    allowed: bool
    message: str = ""
    warnings: tuple[str, ...] = ()
    code: int = 403

    @classmethod
    def allow(cls, *warnings: str) -> Verdict:
        return cls(True, "", tuple(warnings))

    @classmethod
    def deny(cls, message: str, *warnings: str, code: int = 403) -> Verdict:
        return cls(False, message, tuple(warnings), code)

    def with_warnings(self, *warnings: str) -> Verdict:
        return Verdict(self.allowed, self.message, self.warnings + tuple(warnings), self.code)


# Keep warnings within what the API server relays: it truncates each and drops the rest past a total.
_MAX_WARNING_CHARS = 512
_MAX_WARNINGS = 32


def respond(uid: str, verdict: Verdict) -> AdmissionReviewResponse:
    """The AdmissionReview response for ``verdict``, echoing the request's ``uid``."""
    response: AdmissionResponse = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        response["status"] = {"code": verdict.code, "message": verdict.message}
    if verdict.warnings:
        response["warnings"] = [w[:_MAX_WARNING_CHARS] for w in verdict.warnings[:_MAX_WARNINGS]]
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}


def _str(value: object, field: str, *, required: bool = False) -> str:
    if value is None:
        if required:
            raise MalformedReview(f"request.{field} is required")
        return ""
    if not isinstance(value, str):
        raise MalformedReview(f"request.{field} must be a string, got {type(value).__name__}")
    if required and not value:
        raise MalformedReview(f"request.{field} must not be empty")
    return value


def _mapping(value: object, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedReview(f"request.{field} must be an object, got {type(value).__name__}")
    return value


def _object(value: object, field: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedReview(f"request.{field} must be an object or null, got {type(value).__name__}")
    metadata = value.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise MalformedReview(f"request.{field}.metadata must be an object")
    return value


def _user_info(value: object) -> UserInfo:
    raw = _mapping(value, "userInfo")
    groups = raw.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise MalformedReview("request.userInfo.groups must be a list of strings")
    extra_raw = _mapping(raw.get("extra"), "userInfo.extra")
    extra: dict[str, list[str]] = {}
    for key, values in extra_raw.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise MalformedReview(f"request.userInfo.extra[{key!r}] must be a list of strings")
        extra[str(key)] = list(values)
    return {
        "username": _str(raw.get("username"), "userInfo.username"),
        "groups": list(groups),
        "extra": extra,
    }


def parse_review(body: bytes | Mapping[str, Any]) -> AdmissionRequest:
    """Parse an AdmissionReview v1 request body; raise :class:`MalformedReview` for anything else."""
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            document: object = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedReview(f"body is not JSON: {exc}") from None
    else:
        document = body
    if not isinstance(document, Mapping):
        raise MalformedReview("body must be a JSON object (an AdmissionReview)")
    if document.get("apiVersion") != API_VERSION or document.get("kind") != KIND:
        raise MalformedReview(
            f"expected apiVersion {API_VERSION!r} and kind {KIND!r}, got "
            f"{document.get('apiVersion')!r} and {document.get('kind')!r}; "
            "set admissionReviewVersions: [v1] in the webhook configuration"
        )
    raw = document.get("request")
    if not isinstance(raw, Mapping):
        raise MalformedReview("request is missing or not an object")

    kind = _mapping(raw.get("kind"), "kind")
    resource = _mapping(raw.get("resource"), "resource")
    operation = _str(raw.get("operation"), "operation", required=True)
    if operation not in OPERATIONS:
        raise MalformedReview(f"request.operation {operation!r} is not one of {sorted(OPERATIONS)}")
    dry_run = raw.get("dryRun", False)
    if dry_run is None:
        dry_run = False
    if not isinstance(dry_run, bool):
        raise MalformedReview("request.dryRun must be a boolean")
    return {
        "uid": _str(raw.get("uid"), "uid", required=True),
        "kind": {
            "group": _str(kind.get("group"), "kind.group"),
            "version": _str(kind.get("version"), "kind.version"),
            "kind": _str(kind.get("kind"), "kind.kind", required=True),
        },
        "resource": {
            "group": _str(resource.get("group"), "resource.group"),
            "version": _str(resource.get("version"), "resource.version"),
            "resource": _str(resource.get("resource"), "resource.resource"),
        },
        "subResource": _str(raw.get("subResource"), "subResource"),
        "name": _str(raw.get("name"), "name"),
        "namespace": _str(raw.get("namespace"), "namespace"),
        "operation": cast(Operation, operation),
        "userInfo": _user_info(raw.get("userInfo")),
        "object": _object(raw.get("object"), "object"),
        "oldObject": _object(raw.get("oldObject"), "oldObject"),
        "dryRun": dry_run,
    }


def uid_of(body: bytes | Mapping[str, Any]) -> str | None:
    """Best effort: the request uid of a body that may be malformed (for logging a 400)."""
    try:
        document = orjson.loads(body) if isinstance(body, bytes | bytearray | memoryview) else body
    except orjson.JSONDecodeError:
        return None
    if isinstance(document, Mapping):
        request = document.get("request")
        if isinstance(request, Mapping) and isinstance(request.get("uid"), str):
            return cast(str, request["uid"])
    return None
