"""What a Pod's containers see of their Pod on the kubelet stand-in: volumes, paths and environment.

ConfigMap, Secret and emptyDir volumes become directories under the Pod's own directory (a hostPath
volume is that path under ``host_root(node)``); a volume whose ConfigMap or Secret does not exist
yet holds the Pod until it does. In-container paths (mount paths, the termination-message path) are
rewritten to those local paths by :func:`rewrite`. The environment: ``PATH``/``HOME``/``HOSTNAME``,
``KUBECONFIG`` for the Pod's ServiceAccount when ``credentials`` is given, and each container's
``env`` (values, ``fieldRef``, ConfigMap and Secret key references).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from mcosup.kube import errors
from mcosup.kube.client import Kube
from mcosup.kube.resources import CONFIGMAPS, SECRETS
from mcosup.model.objects import Obj

log = logging.getLogger(__name__)


Credentials = Callable[[str, str, str | None, Path], Path]


def rewrite(text: str, paths: Mapping[str, str]) -> str:
    """Replace each in-container path of ``paths`` (as a whole path component prefix) by its local path."""
    for inside in sorted(paths, key=len, reverse=True):
        local = paths[inside]
        text = re.sub(re.escape(inside) + r"(?=$|[/\s'\"`:;|&)<>,=])", lambda _m: local, text)  # noqa: B023
    return text


class PodVolumes:
    """Volumes and environment of a Pod's containers (a part of :class:`~mcosup.sim.kubelet.Kubelet`)."""

    kube: Kube
    credentials: Credentials | None
    volume_retry_seconds: float
    api_retry_seconds: float
    host_root: Callable[[str], Path]

    async def _persist(self, call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """``call`` sent again until the API server answers it, as a kubelet keeps syncing a pod through
        an API server that fails, throttles or restarts (the client's own retries give up in seconds).
        An answer such as 404 is the caller's to handle."""
        while True:
            try:
                return await call(*args, **kwargs)
            except (errors.ConnectionFailed, errors.ServerError, errors.TooManyRequests) as exc:
                log.info("kubelet: %s; sending it again in %.1fs", exc, self.api_retry_seconds)
                await asyncio.sleep(self.api_retry_seconds)

    async def _credentials_env(self, pod: Obj, pod_dir: Path) -> dict[str, str]:
        spec = pod.get("spec") or {}
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(pod_dir),
            "HOSTNAME": pod["metadata"]["name"],
        }
        if self.credentials is not None and spec.get("automountServiceAccountToken", True):
            account = spec.get("serviceAccountName") or "default"
            path = await asyncio.to_thread(
                self.credentials,
                pod["metadata"].get("namespace", "default"),
                account,
                spec.get("nodeName") or None,
                pod_dir / "kubeconfig",
            )
            env["KUBECONFIG"] = str(path)
        return env

    async def _materialise(
        self, pod: Obj, pod_dir: Path, stop: asyncio.Event
    ) -> dict[str, dict[str, str]] | None:
        """Write the Pod's volumes; per container, its in-container → local path map (None: stopped)."""
        ns = pod["metadata"].get("namespace", "default")
        volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
        node = str((pod.get("spec") or {}).get("nodeName") or "")
        while True:
            try:
                # All at once, as a kubelet mounts a Pod's volumes: each is a read from the API server.
                mounted = await together(
                    *(self._volume(ns, v, pod_dir / "volumes" / name, node) for name, v in volumes.items())
                )
                local: dict[str, Path] = dict(zip(volumes, mounted, strict=True))
                break
            except _MissingSource as exc:
                log.info("kubelet: pod %s/%s waits for %s", ns, pod["metadata"]["name"], exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.volume_retry_seconds)
                if stop.is_set():
                    return None
        per_container: dict[str, dict[str, str]] = {}
        containers = list((pod.get("spec") or {}).get("initContainers") or []) + list(
            (pod.get("spec") or {}).get("containers") or []
        )
        for c in containers:
            paths: dict[str, str] = {}
            for mount in c.get("volumeMounts") or []:
                target = local.get(mount["name"])
                if target is None:
                    continue
                sub = mount.get("subPath")
                paths[mount["mountPath"].rstrip("/") or "/"] = str(target / sub) if sub else str(target)
            tpath = c.get("terminationMessagePath") or "/dev/termination-log"
            paths[tpath] = str(pod_dir / "termination" / c["name"])
            per_container[c["name"]] = paths
        return per_container

    async def _volume(self, ns: str, volume: Mapping[str, Any], target: Path, node: str) -> Path:
        if "hostPath" in volume:
            # The node's filesystem is a directory here (a fake host's root, for instance).
            host = self.host_root(node) / str(volume["hostPath"].get("path", "/")).lstrip("/")
            write_files(host, {})
            return host
        write_files(target, {})
        if "configMap" in volume or "secret" in volume:
            is_cm = "configMap" in volume
            src = volume["configMap"] if is_cm else volume["secret"]
            name = src.get("name") if is_cm else src.get("secretName")
            try:
                obj = await self._persist(
                    self.kube.get, CONFIGMAPS if is_cm else SECRETS, str(name), namespace=ns
                )
            except errors.NotFound:
                if src.get("optional"):
                    return target
                raise _MissingSource(f"{'ConfigMap' if is_cm else 'Secret'} {ns}/{name}") from None
            files: dict[str, bytes] = {}
            if is_cm:
                files.update({k: v.encode() for k, v in (obj.get("data") or {}).items()})
                files.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
            else:
                files.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
                files.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
            default_mode = int(src.get("defaultMode", 0o644))
            items = src.get("items")
            chosen = (
                [
                    (i["key"], i.get("path", i["key"]), int(i.get("mode", default_mode)))
                    for i in items
                    if i["key"] in files
                ]
                if items
                else [(k, k, default_mode) for k in files]
            )
            write_files(target, {rel: (files[key], mode) for key, rel, mode in chosen})
        # emptyDir (and anything else): an empty directory.
        return target

    async def _container_env(self, pod: Obj, container: Obj, paths: Mapping[str, str]) -> dict[str, str]:
        ns = pod["metadata"].get("namespace", "default")
        env: dict[str, str] = {}
        for item in container.get("env") or []:
            value = item.get("value")
            source = item.get("valueFrom") or {}
            if value is None and "fieldRef" in source:
                value = _field(pod, source["fieldRef"].get("fieldPath", ""))
            elif value is None and ("configMapKeyRef" in source or "secretKeyRef" in source):
                is_cm = "configMapKeyRef" in source
                ref = source["configMapKeyRef" if is_cm else "secretKeyRef"]
                try:
                    obj = await self._persist(
                        self.kube.get, CONFIGMAPS if is_cm else SECRETS, ref["name"], namespace=ns
                    )
                    raw = (obj.get("data") or {}).get(ref["key"])
                    value = raw if is_cm or raw is None else base64.b64decode(raw).decode(errors="replace")
                except errors.NotFound:
                    value = None
            if value is not None:
                env[item["name"]] = rewrite(str(value), paths)
        return env


class _MissingSource(Exception):
    pass


async def together(*calls: Awaitable[Any]) -> list[Any]:
    """The results of ``calls`` made at once; once all have ended, the first failure is raised as itself
    (so none is left running)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def write_files(directory: Path, files: Mapping[str, tuple[bytes, int]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for rel, (data, mode) in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)


def _field(pod: Mapping[str, Any], path: str) -> str | None:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        value = simple[path]
        return None if value is None else str(value)
    match = re.match(r"metadata\.(labels|annotations)\['(.+)'\]$", path)
    if match:
        value = (meta.get(match.group(1)) or {}).get(match.group(2))
        return None if value is None else str(value)
    return None
