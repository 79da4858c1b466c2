"""Decoding Kubernetes protobuf request bodies for the few kinds kubectl creates imperatively.

Pure: bytes in, the object as a JSON-shaped dict out. `kubectl create namespace|configmap|secret|
serviceaccount` post `application/vnd.kubernetes.protobuf` bodies (the `k8s\\x00` envelope around a
`runtime.Unknown` holding the typed message); the emulator decodes those four kinds and the metadata
they carry. Any other kind raises `Unsupported`, answered with 415 as a server without that codec would.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"

# Field number -> (JSON name, type). Types: string, bytes, int, bool, strings (repeated string),
# map (string->string), bmap (string->bytes), or a nested schema (dict) / [schema] for repeated.
Schema = dict[int, tuple[str, Any]]

OWNER_REFERENCE: Schema = {
    1: ("kind", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
    6: ("controller", "bool"),
    7: ("blockOwnerDeletion", "bool"),
}
OBJECT_META: Schema = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    5: ("uid", "string"),
    6: ("resourceVersion", "string"),
    7: ("generation", "int"),
    10: ("deletionGracePeriodSeconds", "int"),
    11: ("labels", "map"),
    12: ("annotations", "map"),
    13: ("ownerReferences", [OWNER_REFERENCE]),
    14: ("finalizers", "strings"),
}
OBJECT_REFERENCE: Schema = {
    1: ("kind", "string"),
    2: ("namespace", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
    6: ("resourceVersion", "string"),
    7: ("fieldPath", "string"),
}
KINDS: dict[tuple[str, str], Schema] = {
    ("v1", "ConfigMap"): {
        1: ("metadata", OBJECT_META),
        2: ("data", "map"),
        3: ("binaryData", "bmap"),
        4: ("immutable", "bool"),
    },
    ("v1", "Secret"): {
        1: ("metadata", OBJECT_META),
        2: ("data", "bmap"),
        3: ("type", "string"),
        4: ("stringData", "map"),
        5: ("immutable", "bool"),
    },
    ("v1", "Namespace"): {1: ("metadata", OBJECT_META), 2: ("spec", {1: ("finalizers", "strings")})},
    ("v1", "ServiceAccount"): {
        1: ("metadata", OBJECT_META),
        2: ("secrets", [OBJECT_REFERENCE]),
        3: ("automountServiceAccountToken", "bool"),
        4: ("imagePullSecrets", [{1: ("name", "string")}]),
    },
}
UNKNOWN: Schema = {1: ("typeMeta", {1: ("apiVersion", "string"), 2: ("kind", "string")}), 2: ("raw", "bytes")}


class Unsupported(ValueError):
    """The body is not protobuf the emulator can decode; the message says which kind or why."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise Unsupported("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(buf, pos)
            out.append((number, buf[pos : pos + length]))
            pos += length
        elif wire == 1:
            out.append((number, int.from_bytes(buf[pos : pos + 8], "little")))
            pos += 8
        elif wire == 5:
            out.append((number, int.from_bytes(buf[pos : pos + 4], "little")))
            pos += 4
        else:
            raise Unsupported(f"unsupported protobuf wire type {wire}")
    return out


def _message(buf: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, value in _fields(buf):
        if number not in schema:
            continue
        name, kind = schema[number]
        if isinstance(kind, dict):
            out[name] = _message(_bytes(value), kind)
        elif isinstance(kind, list):
            out.setdefault(name, []).append(_message(_bytes(value), kind[0]))
        elif kind == "string":
            out[name] = _bytes(value).decode()
        elif kind == "bytes":
            out[name] = _bytes(value)
        elif kind == "int":
            out[name] = _signed(value)
        elif kind == "bool":
            out[name] = bool(value)
        elif kind == "strings":
            out.setdefault(name, []).append(_bytes(value).decode())
        elif kind in ("map", "bmap"):
            entry = dict(_fields(_bytes(value)))
            raw = _bytes(entry.get(2, b""))
            out.setdefault(name, {})[_bytes(entry.get(1, b"")).decode()] = (
                raw.decode() if kind == "map" else base64.b64encode(raw).decode()
            )
    # Go's protobuf marshalling writes zero values that JSON would omit; drop them.
    return {k: v for k, v in out.items() if v not in ("", 0, {}, [])}


def _bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise Unsupported("expected a length-delimited protobuf field")
    return value


def _signed(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise Unsupported("expected a varint protobuf field")
    return value - (1 << 64) if value >= 1 << 63 else value


def decode(body: bytes) -> dict[str, Any]:
    """The object in a `k8s\\x00` protobuf envelope, shaped as its JSON form."""
    if not body.startswith(MAGIC):
        raise Unsupported("the body does not start with the Kubernetes protobuf magic number")
    unknown = _message(body[len(MAGIC) :], UNKNOWN)
    type_meta = unknown.get("typeMeta") or {}
    api_version, kind = str(type_meta.get("apiVersion", "")), str(type_meta.get("kind", ""))
    schema = KINDS.get((api_version, kind))
    if schema is None:
        raise Unsupported(
            f"protobuf bodies for {kind or 'this kind'} ({api_version}) are not supported; send JSON"
        )
    obj = _message(bytes(unknown.get("raw", b"")), schema)
    return {"apiVersion": api_version, "kind": kind, **obj}
