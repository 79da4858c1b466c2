"""A kubelet stand-in: runs the emulator's Pods as local processes (contract section 10).

It watches Pods through the API like a kubelet does and, for each Pod bound to one of its nodes (or
unbound, when it is told to schedule), runs every container as a local process:

- **Images → local commands.** There are no images here, so an ordered list of :class:`ImageRule`
  says how to run each image: ``programs`` replaces the container's executable (matched by base name,
  e.g. ``mcosup`` → this Python environment's ``mcosup``), ``entrypoint`` stands in for an image's
  entrypoint when the container gives no ``command``, and ``env`` adds variables (knobs a test needs,
  such as a plain-HTTP registry). :func:`default_image_rules` maps the mcosup image to this
  environment's ``mcosup`` and the buildah image to the local ``buildah``. A container whose image
  matches no rule waits with ``ErrImagePull``, as one whose image cannot be pulled would.
- **Volumes.** ConfigMap, Secret and emptyDir volumes are materialised in a per-Pod directory
  (``items``, ``defaultMode`` and per-item ``mode`` honoured); a hostPath volume is that path under
  ``host_root(node)`` (default ``<workdir>/hosts/<node>``: point it at a fake host's root so a
  DaemonSet's Pod sees its node's files); every ``mountPath`` and the
  ``terminationMessagePath`` are rewritten to those local paths wherever they occur in the command,
  args, env values and working directory. A volume whose ConfigMap or Secret does not exist keeps the
  Pod Pending until it does (``optional: true`` volumes are empty instead).
- **Credentials.** With ``credentials`` given and ``automountServiceAccountToken`` not false, each
  container gets ``KUBECONFIG`` naming a kubeconfig for the Pod's ServiceAccount — what an in-cluster
  token and CA are to a real Pod.
- **Status.** Phase, ``startTime``, conditions and ``containerStatuses`` (waiting / running /
  terminated with exit code, reason, start and finish times, and the termination message: the
  termination-log file, or with ``FallbackToLogsOnError`` the log's tail when the container failed
  without writing one). ``restartPolicy`` Always/OnFailure restart containers with a capped backoff.
- **Logs.** Each container's output goes to a file; ``log_sink(namespace, pod, container, text)`` is
  called with it while it runs and when it ends, so ``pods/log`` can serve it.
- **Binding.** With ``bind_to``, a Pod nobody bound is bound to that node through the ``binding``
  subresource before it runs, as the scheduler would (a real API server then deletes it gracefully,
  and the kubelet confirms the deletion).
- **Deletion.** When a Pod is deleted or gets a ``deletionTimestamp``, its processes (whole process
  groups) get SIGTERM, then SIGKILL after the grace period; a gracefully deleted Pod is then removed
  for good (delete with grace 0), as the kubelet confirms a deletion.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import fnmatch
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mcosup.kube import errors
from mcosup.kube.cache import Informer
from mcosup.kube.client import Kube
from mcosup.kube.resources import CONFIGMAPS, PODS, SECRETS
from mcosup.model.objects import Obj

log = logging.getLogger(__name__)

LogSink = Callable[[str, str, str, str], None]
Credentials = Callable[[str, str, str | None, Path], Path]

#: Bytes of the termination message a kubelet keeps (the API's limit is 4096 per container).
TERMINATION_MESSAGE_LIMIT = 4096
#: What FallbackToLogsOnError takes from the log: the last 80 lines, at most 2048 bytes.
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048
DEFAULT_GRACE_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class ImageRule:
    """How to run containers whose image matches ``pattern`` (fnmatch, against the whole reference)."""

    pattern: str
    programs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    entrypoint: Sequence[str] = ()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)


def default_image_rules(
    *,
    mcosup_images: Sequence[str] = ("*mcosup*",),
    buildah_images: Sequence[str] = ("*buildah*",),
    env: Mapping[str, str] | None = None,
) -> list[ImageRule]:
    """The mcosup image runs this environment's ``mcosup``; the buildah image the local ``buildah``."""
    mcosup = str(Path(sys.executable).parent / "mcosup")
    buildah = shutil.which("buildah") or "/usr/bin/buildah"
    extra = dict(env or {})
    rules = [ImageRule(p, {"mcosup": mcosup}, ("mcosup",), extra) for p in mcosup_images]
    rules += [ImageRule(p, {"buildah": buildah}, ("buildah",), extra) for p in buildah_images]
    return rules


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rewrite(text: str, paths: Mapping[str, str]) -> str:
    """Replace each in-container path of ``paths`` (as a whole path component prefix) by its local path."""
    for inside in sorted(paths, key=len, reverse=True):
        local = paths[inside]
        text = re.sub(re.escape(inside) + r"(?=$|[/\s'\"`:;|&)<>,=])", lambda _m: local, text)  # noqa: B023
    return text


def fallback_message(log_text: str) -> str:
    lines = log_text.splitlines()[-FALLBACK_LINES:]
    return "\n".join(lines)[-FALLBACK_BYTES:]


class PodGone(Exception):
    """The Pod was deleted while being set up."""


@dataclasses.dataclass
class _Running:
    task: asyncio.Task[None]
    stop: asyncio.Event
    uid: str


class Kubelet:
    """Run Pods of ``nodes`` (and unbound ones when ``schedule``) as local processes until cancelled."""

    def __init__(
        self,
        kube: Kube,
        workdir: Path,
        *,
        nodes: Sequence[str] = (),
        schedule: bool = True,
        image_rules: Sequence[ImageRule] | None = None,
        credentials: Credentials | None = None,
        log_sink: LogSink | None = None,
        namespace: str | None = None,
        volume_retry_seconds: float = 0.2,
        host_root: Callable[[str], Path] | None = None,
        bind_to: str | None = None,
    ):
        self.kube = kube
        self.workdir = Path(workdir)
        self.nodes = set(nodes) | ({bind_to} if bind_to else set())
        self.schedule = schedule
        #: The node unbound Pods are bound to before they run (the ``binding`` subresource, as the
        #: scheduler does); None runs them unbound.
        self.bind_to = bind_to
        self.image_rules = list(image_rules if image_rules is not None else default_image_rules())
        self.credentials = credentials
        self.log_sink = log_sink
        self.namespace = namespace
        self.volume_retry_seconds = volume_retry_seconds
        self.host_root = host_root or (lambda node: self.workdir / "hosts" / (node or "unbound"))
        self._running: dict[tuple[str, str], _Running] = {}
        self._pods = Informer(kube, PODS, namespace=namespace)
        self._wake = asyncio.Event()

    @property
    def listed(self) -> asyncio.Event:
        return self._pods.listed

    def runs(self, pod: Mapping[str, Any]) -> bool:
        node = (pod.get("spec") or {}).get("nodeName") or ""
        return node in self.nodes if node else self.schedule

    async def run(self) -> None:
        self._pods.subscribe(lambda _kind, _obj: self._wake.set())
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pods.run(), name="kubelet-pods")
                tg.create_task(self._sync_loop(tg), name="kubelet-sync")
        finally:
            for entry in self._running.values():
                entry.stop.set()
                entry.task.cancel()
            await asyncio.gather(*(e.task for e in self._running.values()), return_exceptions=True)

    async def _sync_loop(self, tg: asyncio.TaskGroup) -> None:
        await self._pods.listed.wait()
        while True:
            self._wake.clear()
            self._sync(tg)
            await self._wake.wait()

    def _sync(self, tg: asyncio.TaskGroup) -> None:
        seen: set[tuple[str, str]] = set()
        for pod in self._pods.items():
            meta = pod["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            if not self.runs(pod):
                continue
            seen.add(key)
            entry = self._running.get(key)
            if entry is not None and entry.uid != meta.get("uid"):
                entry.stop.set()  # same name, new Pod: the old one's task winds down by itself
                entry = None
            if meta.get("deletionTimestamp"):
                if entry is not None:
                    entry.stop.set()
                else:
                    tg.create_task(self._finalise_deletion(pod))
                continue
            if entry is None and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                stop = asyncio.Event()
                task = tg.create_task(self._run_pod(pod, stop), name=f"pod-{key[0]}-{key[1]}")
                self._running[key] = _Running(task, stop, meta.get("uid", ""))
        for key, entry in list(self._running.items()):
            if key not in seen:
                entry.stop.set()  # deleted outright (no grace): kill and clean up

    # ----------------------------------------------------------------------------------------- one pod

    def _pod_dir(self, pod: Mapping[str, Any]) -> Path:
        meta = pod["metadata"]
        ns, name, uid = str(meta.get("namespace", "default")), str(meta["name"]), str(meta.get("uid", "x"))
        return self.workdir / ns / f"{name}-{uid[:8]}"

    async def _run_pod(self, pod: Obj, stop: asyncio.Event) -> None:
        meta = pod["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        pod_dir = self._pod_dir(pod)
        try:
            await self._lifecycle(pod, pod_dir, stop)
        except PodGone:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("kubelet: pod %s/%s failed to run", *key)
        finally:
            entry = self._running.get(key)
            if entry is not None and entry.uid == meta.get("uid", ""):
                del self._running[key]
            if stop.is_set():
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(shutil.rmtree, pod_dir, True)
                await self._confirm_deletion(pod)

    async def _finalise_deletion(self, pod: Obj) -> None:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(shutil.rmtree, self._pod_dir(pod), True)
        await self._confirm_deletion(pod)

    async def _confirm_deletion(self, pod: Obj) -> None:
        current = self._pods.get(pod["metadata"]["name"], pod["metadata"].get("namespace"))
        if current is None or current["metadata"].get("uid") != pod["metadata"].get("uid"):
            return
        if not current["metadata"].get("deletionTimestamp"):
            return
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            await self.kube.delete(
                PODS,
                current["metadata"]["name"],
                namespace=current["metadata"].get("namespace"),
                grace_period=0,
                uid=current["metadata"].get("uid"),
            )

    async def _status(self, pod: Obj, status: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.kube.patch_status(
                PODS, meta["name"], {"status": status}, namespace=meta.get("namespace")
            )
        except errors.NotFound:
            raise PodGone from None

    def _rule(self, image: str) -> ImageRule | None:
        for rule in self.image_rules:
            if fnmatch.fnmatchcase(image, rule.pattern):
                return rule
        return None

    async def _bind(self, pod: Obj) -> Obj:
        """Bind an unbound Pod to :attr:`bind_to`; the Pod as bound (a Pod already bound stays put)."""
        meta = pod["metadata"]
        if self.bind_to is None or (pod.get("spec") or {}).get("nodeName"):
            return pod
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "uid": meta.get("uid")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.bind_to},
        }
        try:
            await self.kube.request(
                "POST", PODS.path(meta["name"], meta.get("namespace"), "binding"), body=binding
            )
        except errors.NotFound:
            raise PodGone from None
        except errors.Conflict:
            pass  # bound meanwhile (by a scheduler, or an earlier attempt of ours)
        try:
            return await self.kube.get(PODS, meta["name"], namespace=meta.get("namespace"))
        except errors.NotFound:
            raise PodGone from None

    async def _lifecycle(self, pod: Obj, pod_dir: Path, stop: asyncio.Event) -> None:
        pod = await self._bind(pod)
        spec = pod.get("spec") or {}
        containers: list[Obj] = list(spec.get("containers") or [])
        init_containers: list[Obj] = list(spec.get("initContainers") or [])
        start_time = (pod.get("status") or {}).get("startTime") or _now()
        base_status: Obj = {"startTime": start_time, "hostIP": "127.0.0.1", "podIP": "127.0.0.1"}
        scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": start_time}

        missing = [c for c in init_containers + containers if self._rule(str(c.get("image", ""))) is None]
        if missing:
            await self._status(
                pod,
                {
                    **base_status,
                    "phase": "Pending",
                    "conditions": [scheduled],
                    "containerStatuses": [
                        _waiting(c, "ErrImagePull", self._no_rule_message(c))
                        if c in missing
                        else _waiting(c, "ContainerCreating", "")
                        for c in containers
                    ],
                },
            )
            await stop.wait()
            return

        await self._status(
            pod,
            {
                **base_status,
                "phase": "Pending",
                "conditions": [scheduled],
                "containerStatuses": [_waiting(c, "ContainerCreating", "") for c in containers],
            },
        )
        paths = await self._materialise(pod, pod_dir, stop)
        if paths is None:
            return
        env_base = await self._credentials_env(pod, pod_dir)

        for init in init_containers:
            code = await self._run_container(
                pod, init, pod_dir, paths[init["name"]], env_base, stop, report=None
            )
            if code != 0:
                await self._status(pod, {**base_status, "phase": "Failed", "reason": "InitContainerFailed"})
                await stop.wait()
                return

        statuses: dict[str, Obj] = {c["name"]: _waiting(c, "ContainerCreating", "") for c in containers}
        lock = asyncio.Lock()

        async def report(name: str, cstatus: Obj) -> None:
            async with lock:
                statuses[name] = cstatus
                running = [s for s in statuses.values() if "running" in s["state"]]
                phase = (
                    "Running"
                    if running or any("waiting" not in s["state"] for s in statuses.values())
                    else "Pending"
                )
                ready = bool(running) and len(running) == len(statuses)
                await self._status(
                    pod,
                    {
                        **base_status,
                        "phase": phase,
                        "conditions": [scheduled, _ready_condition(ready)],
                        "containerStatuses": [statuses[c["name"]] for c in containers],
                    },
                )

        restart = spec.get("restartPolicy", "Always")
        results = await asyncio.gather(
            *(
                self._supervise(pod, c, pod_dir, paths[c["name"]], env_base, stop, report, restart)
                for c in containers
            )
        )
        if stop.is_set():
            return
        final = [statuses[c["name"]] for c in containers]
        phase = "Succeeded" if all(code == 0 for code in results) else "Failed"
        await self._status(
            pod,
            {
                **base_status,
                "phase": phase,
                "conditions": [scheduled, _ready_condition(False, reason="PodCompleted")],
                "containerStatuses": final,
            },
        )
        await stop.wait()

    def _no_rule_message(self, container: Mapping[str, Any]) -> str:
        return (
            f"the kubelet stand-in has no local command for image {container.get('image')!r}: add an "
            "ImageRule for it (mcosup.sim.kubelet)"
        )

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
        while True:
            try:
                node = str((pod.get("spec") or {}).get("nodeName") or "")
                local = {
                    name: await self._volume(ns, v, pod_dir / "volumes" / name, node)
                    for name, v in volumes.items()
                }
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
            _write_files(host, {})
            return host
        _write_files(target, {})
        if "configMap" in volume or "secret" in volume:
            is_cm = "configMap" in volume
            src = volume["configMap"] if is_cm else volume["secret"]
            name = src.get("name") if is_cm else src.get("secretName")
            try:
                obj = await self.kube.get(CONFIGMAPS if is_cm else SECRETS, str(name), namespace=ns)
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
            _write_files(target, {rel: (files[key], mode) for key, rel, mode in chosen})
        # emptyDir (and anything else): an empty directory.
        return target

    async def _supervise(
        self,
        pod: Obj,
        container: Obj,
        pod_dir: Path,
        paths: Mapping[str, str],
        env_base: Mapping[str, str],
        stop: asyncio.Event,
        report: Callable[[str, Obj], Any],
        restart: str,
    ) -> int:
        restarts = 0
        while True:
            code = await self._run_container(pod, container, pod_dir, paths, env_base, stop, report, restarts)
            if stop.is_set() or restart == "Never" or (restart == "OnFailure" and code == 0):
                return code
            restarts += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(10.0, 0.5 * 2 ** min(restarts, 5)))
            if stop.is_set():
                return code

    async def _run_container(
        self,
        pod: Obj,
        container: Obj,
        pod_dir: Path,
        paths: Mapping[str, str],
        env_base: Mapping[str, str],
        stop: asyncio.Event,
        report: Callable[[str, Obj], Any] | None,
        restarts: int = 0,
    ) -> int:
        name = container["name"]
        ns, pod_name = pod["metadata"].get("namespace", "default"), pod["metadata"]["name"]
        rule = self._rule(str(container.get("image", "")))
        assert rule is not None  # checked before any container starts
        argv = [rewrite(str(a), paths) for a in (container.get("command") or rule.entrypoint)]
        argv += [rewrite(str(a), paths) for a in container.get("args") or []]
        if not argv:
            raise RuntimeError(f"container {name} has no command and image rule {rule.pattern} no entrypoint")
        argv[0] = rule.programs.get(os.path.basename(argv[0]), argv[0])
        env = dict(env_base)
        env.update(await self._container_env(pod, container, paths))
        env.update(rule.env)
        cwd = rewrite(str(container.get("workingDir") or ""), paths) or str(pod_dir)
        tpath = container.get("terminationMessagePath") or "/dev/termination-log"
        tfile = Path(paths[tpath])
        log_path = pod_dir / "logs" / f"{name}.log"
        _write_files(tfile.parent, {tfile.name: (b"", 0o644)})
        _write_files(log_path.parent, {})
        started = _now()
        with log_path.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: a kill reaches sh's children too
            )
        if report is not None:
            running = _cstatus(container, {"running": {"startedAt": started}}, restarts)
            # A real kubelet names the runtime's container; here the process is the container.
            running["containerID"] = f"local://{proc.pid}"
            await report(name, running)
        waiter = asyncio.ensure_future(proc.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not waiter.done():
                await asyncio.wait({waiter, stopper}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                self._sink(ns, pod_name, name, log_path)
                if stop.is_set() and not waiter.done():
                    await self._kill(proc, pod)
        except asyncio.CancelledError:
            await asyncio.shield(self._kill(proc, pod, grace=0))
            raise
        finally:
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopper
        code = proc.returncode if proc.returncode is not None else -1
        self._sink(ns, pod_name, name, log_path)
        fallback = code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        message = termination_message(tfile, log_path, fallback)
        terminated: Obj = {
            "exitCode": code if code >= 0 else 128 - code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": started,
            "finishedAt": _now(),
        }
        if message:
            terminated["message"] = message
        if report is not None and not stop.is_set():
            ended = _cstatus(container, {"terminated": terminated}, restarts)
            ended["containerID"] = terminated["containerID"] = f"local://{proc.pid}"
            await report(name, ended)
        return code

    def _sink(self, ns: str, pod: str, container: str, log_path: Path) -> None:
        if self.log_sink is None:
            return
        try:
            text = log_path.read_text(errors="replace")
        except OSError:
            return
        self.log_sink(ns, pod, container, text)

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
                    obj = await self.kube.get(CONFIGMAPS if is_cm else SECRETS, ref["name"], namespace=ns)
                    raw = (obj.get("data") or {}).get(ref["key"])
                    value = raw if is_cm or raw is None else base64.b64decode(raw).decode(errors="replace")
                except errors.NotFound:
                    value = None
            if value is not None:
                env[item["name"]] = rewrite(str(value), paths)
        return env

    async def _kill(self, proc: asyncio.subprocess.Process, pod: Obj, grace: float | None = None) -> None:
        if proc.returncode is not None:
            return
        if grace is None:
            meta_grace = pod["metadata"].get("deletionGracePeriodSeconds")
            spec_grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
            current = self._pods.get(pod["metadata"]["name"], pod["metadata"].get("namespace"))
            if current is not None:
                meta_grace = current["metadata"].get("deletionGracePeriodSeconds", meta_grace)
            chosen = meta_grace if meta_grace is not None else spec_grace
            grace = float(chosen) if chosen is not None else DEFAULT_GRACE_SECONDS
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        else:
            # The group's other members (sh's children) go too, whatever the leader did.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


class _MissingSource(Exception):
    pass


def _write_files(directory: Path, files: Mapping[str, tuple[bytes, int]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for rel, (data, mode) in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)


def termination_message(tfile: Path, log_path: Path, fallback_to_logs: bool) -> str:
    """The termination-log file's contents, else (when asked) the log's tail."""
    try:
        message = tfile.read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode(errors="replace")
    except OSError:
        message = ""
    if not message.strip() and fallback_to_logs:
        try:
            message = fallback_message(log_path.read_text(errors="replace"))
        except OSError:
            message = ""
    return message


def _waiting(container: Mapping[str, Any], reason: str, message: str) -> Obj:
    waiting: Obj = {"reason": reason}
    if message:
        waiting["message"] = message
    return _cstatus(container, {"waiting": waiting}, 0)


def _cstatus(container: Mapping[str, Any], state: Obj, restarts: int) -> Obj:
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": "running" in state,
        "started": "running" in state,
        "restartCount": restarts,
        "state": state,
    }


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


def _ready_condition(ready: bool, *, reason: str | None = None) -> dict[str, Any]:
    condition = {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": _now()}
    if reason:
        condition["reason"] = reason
    return condition
