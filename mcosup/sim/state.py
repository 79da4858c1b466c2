"""The state every part of the emulator works on, declared once for the classes that make it up.

`Emulator` (:mod:`mcosup.sim.apiserver`) is one object assembled from a class per concern (routing,
reads, watch, writes, deletion, pod subresources, admission, the resource-type table and CRDs), each
in its own module and each a subclass of :class:`EmulatorState`, which declares the attributes they
share; `Emulator.__init__` sets them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from mcosup.sim import admission
from mcosup.sim.admission import UserInfo
from mcosup.sim.faults import Faults
from mcosup.sim.resources import ResourceType
from mcosup.sim.store import Store
from mcosup.sim.wire import RequestRecord


class EmulatorState:
    """The emulator's attributes, set by `Emulator.__init__` and `start()`."""

    store: Store
    service_map: dict[tuple[str, str, int], str]
    host: str
    port: int
    bookmark_interval: float
    default_watch_timeout: float
    graceful_pod_deletion: bool
    collect_dangling_dependents: bool
    requests: list[RequestRecord]
    faults: Faults
    url: str
    ca_path: Path
    _tokens: dict[str, UserInfo]
    _streaming: set[int]  # watch requests already in the request log
    # The resource types served, (group, version, plural) -> type; built-ins, then CRDs' kinds.
    _types: dict[tuple[str, str, str], ResourceType]
    _crd_types: dict[str, list[ResourceType]]  # CRD name -> the types it registered
    _pod_logs: dict[tuple[str, str, str], str]
    _log_changed: asyncio.Event
    _runner: web.AppRunner | None
    _tmp: Path | None
    _caller: admission.Caller
    _ca_pem: bytes
