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

The parts: this module follows the Pods and drives each one's life (binding, status, deletion);
:mod:`~mcosup.sim.containers` runs the containers as processes, :mod:`~mcosup.sim.podvolumes` gives
them their volumes and environment, :mod:`~mcosup.sim.podstatus` words their status.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mcosup.kube import errors
from mcosup.kube.cache import Informer
from mcosup.kube.client import Kube
from mcosup.kube.resources import PODS
from mcosup.model.objects import Obj
from mcosup.sim.containers import ContainerProcesses, ImageRule, LogSink, default_image_rules
from mcosup.sim.podstatus import now, ready_condition, waiting
from mcosup.sim.podvolumes import Credentials, rewrite, together

log = logging.getLogger(__name__)

__all__ = ["Credentials", "ImageRule", "Kubelet", "LogSink", "PodGone", "default_image_rules", "rewrite"]


class PodGone(Exception):
    """The Pod was deleted while being set up."""


@dataclasses.dataclass
class _Running:
    task: asyncio.Task[None]
    stop: asyncio.Event
    uid: str


class Kubelet(ContainerProcesses):
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
        api_retry_seconds: float = 1.0,
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
        self.api_retry_seconds = api_retry_seconds
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
            await self._persist(
                self.kube.delete,
                PODS,
                current["metadata"]["name"],
                namespace=current["metadata"].get("namespace"),
                grace_period=0,
                uid=current["metadata"].get("uid"),
            )

    async def _gone_if_missing(self, call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        try:
            return await self._persist(call, *args, **kwargs)
        except errors.NotFound:
            raise PodGone from None

    async def _status(self, pod: Obj, status: Obj) -> None:
        meta = pod["metadata"]
        await self._gone_if_missing(
            self.kube.patch_status, PODS, meta["name"], {"status": status}, namespace=meta.get("namespace")
        )

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
            path = PODS.path(meta["name"], meta.get("namespace"), "binding")
            await self._gone_if_missing(self.kube.request, "POST", path, body=binding)
        except errors.Conflict:
            pass  # bound meanwhile (by a scheduler, or an earlier attempt of ours)
        bound: Obj = await self._gone_if_missing(
            self.kube.get, PODS, meta["name"], namespace=meta.get("namespace")
        )
        return bound

    async def _lifecycle(self, pod: Obj, pod_dir: Path, stop: asyncio.Event) -> None:
        pod = await self._bind(pod)
        spec = pod.get("spec") or {}
        containers: list[Obj] = list(spec.get("containers") or [])
        init_containers: list[Obj] = list(spec.get("initContainers") or [])
        start_time = (pod.get("status") or {}).get("startTime") or now()
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
                        waiting(c, "ErrImagePull", self._no_rule_message(c))
                        if c in missing
                        else waiting(c, "ContainerCreating", "")
                        for c in containers
                    ],
                },
            )
            await stop.wait()
            return

        # The Pod is reported Pending while its volumes and credentials are made, as a kubelet's status
        # manager writes it beside the volume manager's work, not before.
        _, paths, env_base = await together(
            self._status(
                pod,
                {
                    **base_status,
                    "phase": "Pending",
                    "conditions": [scheduled],
                    "containerStatuses": [waiting(c, "ContainerCreating", "") for c in containers],
                },
            ),
            self._materialise(pod, pod_dir, stop),
            self._credentials_env(pod, pod_dir),
        )
        if paths is None:
            return

        for init in init_containers:
            code = await self._run_container(
                pod, init, pod_dir, paths[init["name"]], env_base, stop, report=None
            )
            if code != 0:
                await self._status(pod, {**base_status, "phase": "Failed", "reason": "InitContainerFailed"})
                await stop.wait()
                return

        statuses: dict[str, Obj] = {c["name"]: waiting(c, "ContainerCreating", "") for c in containers}
        lock = asyncio.Lock()
        restart = spec.get("restartPolicy", "Always")

        def ended_for_good(cstatus: Obj) -> bool:
            ended = cstatus["state"].get("terminated")
            return ended is not None and (
                restart == "Never" or (restart == "OnFailure" and ended.get("exitCode") == 0)
            )

        async def report(name: str, cstatus: Obj) -> None:
            async with lock:
                statuses[name] = cstatus
                if all(ended_for_good(s) for s in statuses.values()):
                    # The Pod's phase is final: its status below says so in one write with these
                    # container statuses, as a kubelet's status manager does (not Running first).
                    return
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
                        "conditions": [scheduled, ready_condition(ready)],
                        "containerStatuses": [statuses[c["name"]] for c in containers],
                    },
                )

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
                "conditions": [scheduled, ready_condition(False, reason="PodCompleted")],
                "containerStatuses": final,
            },
        )
        await stop.wait()

    def _no_rule_message(self, container: Mapping[str, Any]) -> str:
        return (
            f"the kubelet stand-in has no local command for image {container.get('image')!r}: add an "
            "ImageRule for it (mcosup.sim.kubelet)"
        )
