"""The two API servers side by side: the emulator and the real kube-apiserver, asked the same things.

A probe is a coroutine ``probe(side) -> answer`` that talks to one API server through the raw HTTP/JSON
layer (or the kubectl built with the real control plane) and returns what a client saw: status codes,
bodies, events, kubectl output. :func:`mask` removes what legitimately differs between any two runs
(uids, resourceVersions, timestamps, managedFields, generated names' suffixes), so the masked answers of
the two servers must be equal; where they are not, the difference is fixed in the emulator or pinned
by a test and listed in the emulator's table of known differences (``mcosup/sim/README.md``).

Both servers get the same names: the emulator is fresh for each test, and each test uses a namespace
(and cluster-scoped names) of its own on the session-wide real control plane.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import re
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from emu_http import Api

from mcosup.sim.apiserver import Emulator
from mcosup.sim.controlplane import ADMIN_USER, ControlPlane
from waiting import eventually

UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
VOLATILE_META = ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp")
GROUP = "machineconfiguration.openshift.io"
CRDS = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "mco" / "crds"


def mask(value: Any) -> Any:
    """``value`` with every volatile field replaced by a placeholder (or, managedFields, removed)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        generate = value.get("generateName")
        for key, item in value.items():
            if key == "managedFields":
                continue
            if key in VOLATILE_META and isinstance(item, str | int):
                out[key] = f"<{key}>"
            elif key == "name" and isinstance(generate, str) and isinstance(item, str):
                out[key] = _generated(item, generate)
            else:
                out[key] = mask(item)
        return out
    if isinstance(value, list):
        return [mask(item) for item in value]
    if isinstance(value, str):
        if UID.match(value):
            return "<uid>"
        if TIMESTAMP.match(value):
            return "<time>"
    return value


def _generated(name: str, prefix: str) -> str:
    """A generated name as ``prefix<suffix>`` when it is the prefix and 5 characters, else unchanged."""
    if name.startswith(prefix) and len(name) == len(prefix) + 5:
        return prefix + "<suffix>"
    return name


def unique(prefix: str = "conf") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass
class Side:
    """One API server as a client sees it."""

    name: str  # "emulator" or "real"
    api: Api
    kubeconfig: Path
    kubectl_binary: str
    real: bool
    #: Paths of cluster-scoped objects a probe made on this server, deleted after the test.
    cleanup: list[str] = field(default_factory=list)

    async def kubectl(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            self.kubectl_binary,
            "--kubeconfig",
            str(self.kubeconfig),
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 60)
        code = proc.returncode if proc.returncode is not None else -1
        return code, out.decode(), err.decode()

    async def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """A call that must succeed (2xx); its decoded body."""
        status, out, _ = await self.api.call(method, path, body, **kw)
        assert 200 <= status < 300, f"{self.name}: {method} {path} -> {status} {out}"
        return out

    async def answer(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        """(status, masked body) of one call."""
        status, out, _ = await self.api.call(method, path, body, **kw)
        return status, mask(out)

    async def until(self, check: Callable[[], Awaitable[bool]], what: str, within: float = 60.0) -> None:
        """Poll until ``check`` holds: the real server's controllers act asynchronously."""
        await eventually(check, within=within, what=f"{self.name}: {what}", every=0.1)

    async def namespace(self, name: str) -> None:
        await self.ok(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
        if self.real:
            # The ServiceAccount admission plugin refuses Pods until the controller made `default`.
            async def has_default() -> bool:
                status, _, _ = await self.api.call(
                    "GET", f"/api/v1/namespaces/{name}/serviceaccounts/default"
                )
                return status == 200

            await self.until(has_default, f"ServiceAccount default in {name}")

    async def install_crds(self, group: str, *names: str) -> None:
        """The MCO CRDs (read from ../shared at test time) under ``group``, established.

        With no names, waits for the ones already created under ``group``.
        """
        for crd_name in names:
            crd = mco_crd(crd_name, group)
            await self.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        if not names:
            listed = await self.ok("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
            names = tuple(
                c["spec"]["names"]["plural"] for c in listed["items"] if c["spec"]["group"] == group
            )
        for crd_name in names:
            full = f"{crd_name}.{group}"

            async def established(full: str = full) -> bool:
                status, out, _ = await self.api.call(
                    "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{full}"
                )
                conditions = (out.get("status") or {}).get("conditions") or [] if status == 200 else []
                return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

            await self.until(established, f"CRD {full} Established")
        if self.real:
            # Discovery of a new group reaches the handler chain a moment after Established.
            async def served() -> bool:
                status, _, _ = await self.api.call("GET", f"/apis/{group}/v1/{names[0]}")
                return status == 200

            await self.until(served, f"{names[0]}.{group} served")


def emulator_side(emu: Emulator, session: aiohttp.ClientSession, tmp_path: Path, kubectl: str) -> Side:
    """The emulator ``emu`` as a :class:`Side`, with an admin token and kubeconfig."""
    api = Api(
        session,
        emu.url,
        ssl.create_default_context(cafile=str(emu.ca_path)),
        emu.add_token(ADMIN_USER, ["system:masters"]),
    )
    kubeconfig = emu.write_kubeconfig(tmp_path / "emulator.kubeconfig", user=ADMIN_USER)
    return Side("emulator", api, kubeconfig, kubectl, real=False)


def real_side(control_plane: ControlPlane, session: aiohttp.ClientSession, tmp_path: Path) -> Side:
    """The real control plane as a :class:`Side`, as its admin."""
    api = Api(
        session,
        control_plane.url,
        ssl.create_default_context(cadata=control_plane.ca_pem.decode()),
        control_plane.admin_token,
    )
    kubeconfig = control_plane.write_kubeconfig(tmp_path / "real.kubeconfig")
    return Side("real", api, kubeconfig, control_plane.binary("kubectl"), real=True)


def mco_crd(plural: str, group: str) -> dict[str, Any]:
    """The MCO's CRD for ``plural`` moved to ``group``, so tests sharing the real server never collide.

    Short names and categories go too: two CRDs claiming ``mcp`` would make kubectl's choice depend on
    what else the shared server holds.
    """
    text = (CRDS / f"{plural}.crd.yaml").read_text()
    crd: dict[str, Any] = yaml.safe_load(text.replace(GROUP, group))
    crd["spec"]["names"].pop("shortNames", None)
    crd["spec"]["names"].pop("categories", None)
    return crd


def crd_group() -> str:
    return f"{secrets.token_hex(4)}.conformance.mcosup.test"


def events(lines: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """A watch's events as (type, masked object) pairs."""
    return [(e["type"], mask(e["object"])) for e in lines]


def dumps(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=repr)


def diff(a: Any, b: Any) -> str:
    """A unified diff of two answers' JSON, for assertion messages."""
    lines = difflib.unified_diff(dumps(a).splitlines(), dumps(b).splitlines(), lineterm="", n=4)
    return "\n".join(lines)
