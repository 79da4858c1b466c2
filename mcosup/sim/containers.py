"""A Pod's containers as local processes on the kubelet stand-in.

There are no images here: an ordered list of :class:`ImageRule` says how to run each image (the
executable replaced by base name, an entrypoint when the container gives no command, extra
environment); :func:`default_image_rules` maps the mcosup and buildah images to local commands. Each
container runs in its own process group with its output in a log file (passed to ``log_sink`` while
it runs and when it ends), is restarted by ``restartPolicy`` with a capped backoff, and on a stop
gets SIGTERM, then SIGKILL after the Pod's grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mcosup.kube.cache import Informer
from mcosup.model.objects import Obj
from mcosup.sim.podstatus import container_status, now, termination_message
from mcosup.sim.podvolumes import PodVolumes, rewrite, write_files

LogSink = Callable[[str, str, str, str], None]
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
    """The mcosup image runs this environment's ``mcosup``; the buildah image the local ``buildah``.

    "This environment" includes its ``PYTHONPATH``: a pod runs the very mcosup code the process that runs
    the kubelet stand-in imports (a checkout on ``PYTHONPATH`` over an installed one), as the supervisor
    process does, never another copy installed in the same virtualenv.
    """
    mcosup = str(Path(sys.executable).parent / "mcosup")
    buildah = shutil.which("buildah") or "/usr/bin/buildah"
    extra = dict(env or {})
    mcosup_env = dict(extra)
    if os.environ.get("PYTHONPATH"):
        mcosup_env.setdefault("PYTHONPATH", os.environ["PYTHONPATH"])
    rules = [ImageRule(p, {"mcosup": mcosup}, ("mcosup",), mcosup_env) for p in mcosup_images]
    rules += [ImageRule(p, {"buildah": buildah}, ("buildah",), extra) for p in buildah_images]
    return rules


def gated_buildah_rule(pattern: str, gate: Path, bin_dir: Path) -> ImageRule:
    """Images matching ``pattern`` run a ``buildah`` (written into ``bin_dir``) that waits while the file
    ``gate`` exists, then runs the local one: a test holds builds "mid-build" and lets them go."""
    gated = bin_dir / "buildah"
    bin_dir.mkdir(parents=True, exist_ok=True)
    gated.write_text(
        "#!/bin/sh\n"
        f"while [ -e {shlex.quote(str(gate))} ]; do sleep 0.05; done\n"
        f'exec {shlex.quote(shutil.which("buildah") or "/usr/bin/buildah")} "$@"\n'
    )
    gated.chmod(0o755)
    return ImageRule(
        pattern, entrypoint=("buildah",), env={"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    )


class ContainerProcesses(PodVolumes):
    """Run, restart and stop containers (a part of :class:`~mcosup.sim.kubelet.Kubelet`)."""

    image_rules: list[ImageRule]
    log_sink: LogSink | None
    _pods: Informer

    def _rule(self, image: str) -> ImageRule | None:
        for rule in self.image_rules:
            if fnmatch.fnmatchcase(image, rule.pattern):
                return rule
        return None

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
        write_files(tfile.parent, {tfile.name: (b"", 0o644)})
        write_files(log_path.parent, {})
        started = now()
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
        waiter = asyncio.ensure_future(proc.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            # Inside the try: a kubelet stopped while it reports the start still kills the process.
            if report is not None:
                running = container_status(container, {"running": {"startedAt": started}}, restarts)
                # A real kubelet names the runtime's container; here the process is the container.
                running["containerID"] = f"local://{proc.pid}"
                await report(name, running)
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
            "finishedAt": now(),
        }
        if message:
            terminated["message"] = message
        if report is not None and not stop.is_set():
            ended = container_status(container, {"terminated": terminated}, restarts)
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
