"""Jobs on both servers: the emulator's Job controller (mcosup.sim.jobs) against kube-controller-manager's.

Each probe runs the same scenario on a fresh emulator and on the session's real control plane, at the
same time (the scenarios wait on the real controller's pod-failure backoff, 10 s, which no test may
shorten), and compares what a client sees once the Job settles. Neither server has a kubelet: on each
side the kubelet stand-in (mcosup.sim.kubelet) binds the test namespace's Pods to a node of its own and
runs their containers as local ``/bin/sh`` processes, so the Pods really start, succeed, fail and stop.

Pods are compared by their metadata and phase: their specs differ by what the real server's
ServiceAccount admission plugin adds (a known difference pinned in test_emu_conformance.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from emu_sides import Side, diff, emulator_side, mask, real_side, unique

from mcosup.kube import client as kclient
from mcosup.kube.resources import NAMESPACES
from mcosup.runtime.settings import KubeSettings
from mcosup.sim import jobspec
from mcosup.sim.apiserver import Emulator
from mcosup.sim.controlplane import ControlPlane
from mcosup.sim.kubelet import ImageRule, Kubelet
from waiting import eventually

SHELL = ImageRule("example.com/shell:*", entrypoint=("/bin/sh",))
TRACKING = "batch.kubernetes.io/job-tracking"
UID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

Probe = Callable[[Side], Awaitable[Any]]


@dataclass
class JobSides:
    emulator: Side
    real: Side
    ns: str
    emulator_server: Emulator

    async def run(self, probe: Probe) -> tuple[Any, Any]:
        """The probe's answers from the emulator and the real server, run side by side."""
        emu, real = await asyncio.gather(probe(self.emulator), probe(self.real))
        return emu, real

    async def same(self, probe: Probe) -> Any:
        emu, real = await self.run(probe)
        assert emu == real, "emulator (-) and real (+) differ:\n" + diff(emu, real)
        return real


@contextlib.asynccontextmanager
async def kubelet(kubeconfig: Path, ns: str, workdir: Path) -> AsyncIterator[None]:
    """The kubelet stand-in for the server of ``kubeconfig``: runs the namespace's Pods, bound to a node
    of the test's own."""
    async with kclient.connect(KubeSettings(kubeconfig=str(kubeconfig))) as kube:
        stand_in = Kubelet(kube, workdir, image_rules=[SHELL], namespace=ns, bind_to=f"{ns}-node")
        task = asyncio.create_task(stand_in.run(), name=f"kubelet-{workdir.name}")
        try:
            await stand_in.listed.wait()
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def sides(control_plane: ControlPlane, tmp_path: Path) -> AsyncIterator[JobSides]:
    ns = unique("jobs")
    async with Emulator() as emu, aiohttp.ClientSession() as session:
        both = JobSides(
            emulator_side(emu, session, tmp_path, control_plane.binary("kubectl")),
            real_side(control_plane, session, tmp_path),
            ns,
            emu,
        )
        for side in (both.emulator, both.real):
            await side.namespace(ns)
        try:
            async with (
                kubelet(both.emulator.kubeconfig, ns, tmp_path / "kubelet-emulator"),
                kubelet(both.real.kubeconfig, ns, tmp_path / "kubelet-real"),
            ):
                yield both
        finally:
            await both.real.api.call("DELETE", f"/api/v1/namespaces/{ns}")


def job(name: str, script: str, restart: str = "Never", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            **spec,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "restartPolicy": restart,
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{"name": "c", "image": "example.com/shell:1", "args": ["-c", script]}],
                },
            },
        },
    }


def jobs_path(ns: str) -> str:
    return f"/apis/batch/v1/namespaces/{ns}/jobs"


async def job_status(side: Side, ns: str, name: str) -> dict[str, Any]:
    got = await side.ok("GET", f"{jobs_path(ns)}/{name}")
    return dict(got.get("status") or {})


async def until_condition(side: Side, ns: str, name: str, type_: str, within: float = 60.0) -> None:
    async def holds() -> bool:
        conditions = (await job_status(side, ns, name)).get("conditions") or []
        return any(c["type"] == type_ and c["status"] == "True" for c in conditions)

    await side.until(holds, f"Job {name} {type_}", within=within)


async def pods_of(side: Side, ns: str, name: str) -> list[dict[str, Any]]:
    listed = await side.ok(
        "GET",
        f"/api/v1/namespaces/{ns}/pods",
        params={"labelSelector": f"batch.kubernetes.io/job-name={name}"},
    )
    return sorted(listed["items"], key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))


async def until_running(side: Side, ns: str, name: str, count: int = 1) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def running() -> bool:
        pods = await pods_of(side, ns, name)
        found[:] = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        return len(found) >= count and all(not p["metadata"].get("deletionTimestamp") for p in found)

    await side.until(running, f"{count} Pod(s) of {name} Running")
    return found


def seen(pod: dict[str, Any]) -> dict[str, Any]:
    """What a probe compares of a Pod: its metadata and phase (masked)."""
    return mask({"metadata": pod["metadata"], "phase": (pod.get("status") or {}).get("phase")})


def described_masked(text: str) -> list[str]:
    """``kubectl describe`` output without what differs between any two runs: uids, generated names'
    suffixes, times and ages, and the column padding they change."""
    text = re.sub(UID, "<uid>", text)
    text = re.sub(r"(\w)-[a-z0-9]{5}\b", r"\1-<suffix>", text)
    text = re.sub(r"^(Start Time|Completed At|Duration):.*$", r"\1: <time>", text, flags=re.MULTILINE)
    text = re.sub(r"  \d+[smh]  ", "  <age>  ", text)
    return [re.sub(r" +", " ", line) for line in text.splitlines()]


async def until_event(side: Side, ns: str, name: str, reason: str) -> None:
    """Until the Job has the Event (the real recorder writes its Events asynchronously)."""

    async def recorded() -> bool:
        got = await side.ok("GET", f"/api/v1/namespaces/{ns}/events")
        return any(e["involvedObject"].get("name") == name and e["reason"] == reason for e in got["items"])

    await side.until(recorded, f"the {reason} Event of {name}")


def when(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


# ------------------------------------------------------------------------------ the probes


async def test_a_job_as_created_and_refused(sides: JobSides) -> None:
    ns = sides.ns

    async def probe(side: Side) -> Any:
        own_labels = job("own", "exit 0", suspend=True)
        own_labels["metadata"]["labels"] = {"team": "a"}
        no_labels = job("bare", "exit 0", suspend=True)
        del no_labels["spec"]["template"]["metadata"]
        return {
            "defaults": await side.answer("POST", jobs_path(ns), job("plain", "exit 0", suspend=True)),
            "own_labels": await side.answer("POST", jobs_path(ns), own_labels),
            "no_labels": await side.answer("POST", jobs_path(ns), no_labels),
            "always": await side.answer("POST", jobs_path(ns), job("always", "exit 0", restart="Always")),
        }

    await sides.same(probe)


async def test_a_job_whose_pod_succeeds(sides: JobSides) -> None:
    ns = sides.ns

    async def probe(side: Side) -> Any:
        await side.ok("POST", jobs_path(ns), job("ok", "sleep 1; exit 0"))
        waited = await side.kubectl("wait", "-n", ns, "--for=condition=complete", "job/ok", "--timeout=60s")
        await until_condition(side, ns, "ok", "Complete")
        got = await side.ok("GET", f"{jobs_path(ns)}/ok")
        status = got["status"]
        pods = await pods_of(side, ns, "ok")
        code, out, err = await side.kubectl("get", "jobs", "-n", ns, "-o", "wide")
        # Duration and Age are left out: the two runs start and finish a second apart at times.
        rows = [
            [*row[:3], *row[5:]] for row in (re.sub(UID, "<uid>", line).split() for line in out.splitlines())
        ]
        await until_event(side, ns, "ok", "Completed")
        _, described, _ = await side.kubectl("describe", "-n", ns, "job/ok")
        return {
            "job": mask(got),
            "kubectl_describe": described_masked(described),
            "completed_after_start": when(status["completionTime"]) >= when(status["startTime"]),
            "pods": [seen(p) for p in pods],
            "kubectl_get": (code, rows, err),
            "kubectl_wait": waited,
        }

    answer = await sides.same(probe)
    assert answer["kubectl_get"][1][1][:3] == ["ok", "Complete", "1/1"]
    assert answer["kubectl_wait"] == (0, "job.batch/ok condition met\n", "")
    assert "Pods Statuses: 0 Active (0 Ready) / 1 Succeeded / 0 Failed" in answer["kubectl_describe"]
    assert answer["job"]["status"]["succeeded"] == 1
    assert [c["type"] for c in answer["job"]["status"]["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert TRACKING not in (answer["pods"][0]["metadata"].get("finalizers") or [])


async def test_the_statuses_a_watcher_sees(sides: JobSides) -> None:
    """Every version of a Job's status from creation to Complete: both controllers write the same
    ones (Pod changes within a second make one sync on both)."""
    ns = sides.ns

    async def probe(side: Side) -> Any:
        created = await side.ok("POST", jobs_path(ns), job("seq", "sleep 3; exit 0"))
        statuses = []
        stream = side.api.watch(
            jobs_path(ns),
            resourceVersion=created["metadata"]["resourceVersion"],
            fieldSelector="metadata.name=seq",
        )
        async with asyncio.timeout(60), contextlib.aclosing(stream):
            async for event in stream:
                if event["type"] == "BOOKMARK":
                    continue
                status = event["object"].get("status") or {}
                statuses.append((event["type"], mask(status)))
                if any(c["type"] == "Complete" for c in status.get("conditions") or []):
                    break
        return statuses

    answer = await sides.same(probe)
    assert len(answer) == 4


async def test_a_job_whose_pods_fail_until_the_backoff_limit(sides: JobSides) -> None:
    """backoffLimit 1: the first Pod fails, the second is created after the controller's pod-failure
    backoff (10 s on both), fails too, and the Job fails."""
    ns = sides.ns

    async def probe(side: Side) -> Any:
        await side.ok("POST", jobs_path(ns), job("bad", "echo no; exit 3", backoffLimit=1))
        await until_condition(side, ns, "bad", "Failed", within=60)
        got = await side.ok("GET", f"{jobs_path(ns)}/bad")
        pods = await pods_of(side, ns, "bad")
        first_finished = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
        gap = (when(pods[1]["metadata"]["creationTimestamp"]) - when(first_finished)).total_seconds()
        return {
            "job": mask(got),
            "pods": [seen(p) for p in pods],
            "backoff_waited": 9 <= gap <= 15,
        }

    answer = await sides.same(probe)
    status = answer["job"]["status"]
    assert (status["failed"], [c["type"] for c in status["conditions"]]) == (2, ["FailureTarget", "Failed"])
    assert status["conditions"][1]["reason"] == "BackoffLimitExceeded"


async def test_a_deleted_pod_is_replaced(sides: JobSides) -> None:
    """A running Pod deleted: counted as failed (podReplacementPolicy TerminatingOrFailed) and replaced
    after the pod-failure backoff; the Job goes on."""
    ns = sides.ns

    async def probe(side: Side) -> Any:
        await side.ok("POST", jobs_path(ns), job("keep", "sleep 300"))
        first = (await until_running(side, ns, "keep"))[0]
        deleted = await side.answer("DELETE", f"/api/v1/namespaces/{ns}/pods/{first['metadata']['name']}")

        async def replaced() -> bool:
            pods = await pods_of(side, ns, "keep")
            status = await job_status(side, ns, "keep")
            return (
                [p["metadata"]["uid"] for p in pods] != [first["metadata"]["uid"]]
                and len(pods) == 1
                and (status.get("active"), status.get("ready"), status.get("failed")) == (1, 1, 1)
            )

        # (the real controller counts a Pod's readiness up to a second after it changed)
        await side.until(replaced, "the deleted Pod replaced and ready", within=40)
        second = (await until_running(side, ns, "keep"))[0]
        got = await side.ok("GET", f"{jobs_path(ns)}/keep")
        return {
            "deleted": (deleted[0], deleted[1]["metadata"]),
            "job": mask(got),
            "replacement": seen(second),
            "waited_for_backoff": (
                when(second["metadata"]["creationTimestamp"]) - when(first["metadata"]["creationTimestamp"])
            ).total_seconds()
            >= 9,
        }

    answer = await sides.same(probe)
    assert answer["job"]["status"]["failed"] == 1


async def test_active_deadline_seconds(sides: JobSides) -> None:
    ns = sides.ns

    async def probe(side: Side) -> Any:
        await side.ok("POST", jobs_path(ns), job("late", "sleep 300", activeDeadlineSeconds=3))
        await until_running(side, ns, "late")
        await until_condition(side, ns, "late", "Failed", within=40)
        got = await side.ok("GET", f"{jobs_path(ns)}/late")

        async def no_pods() -> bool:
            return not await pods_of(side, ns, "late")

        await side.until(no_pods, "the Job's Pods deleted")
        return {"job": mask(got)}

    answer = await sides.same(probe)
    status = answer["job"]["status"]
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        ("FailureTarget", "DeadlineExceeded"),
        ("Failed", "DeadlineExceeded"),
    ]
    assert status["failed"] == 1


async def test_deleting_a_job_takes_its_pods_or_orphans_them(sides: JobSides) -> None:
    """Background deletes the Pods (the kubelet stops them); a DELETE without a policy orphans them
    (batch/v1's default), and the controller then drops their tracking finalizer."""
    ns = sides.ns

    async def probe(side: Side) -> Any:
        await side.ok("POST", jobs_path(ns), job("gone", "sleep 300"))
        await side.ok("POST", jobs_path(ns), job("orphan", "sleep 300"))
        await until_running(side, ns, "gone")
        await until_running(side, ns, "orphan")
        background = await side.answer("DELETE", f"{jobs_path(ns)}/gone", {"propagationPolicy": "Background"})
        default = await side.answer("DELETE", f"{jobs_path(ns)}/orphan")

        async def settled() -> bool:
            orphans = await pods_of(side, ns, "orphan")
            return (
                not await pods_of(side, ns, "gone")
                and len(orphans) == 1
                and not orphans[0]["metadata"].get("finalizers")
                and not orphans[0]["metadata"].get("ownerReferences")
            )

        await side.until(settled, "the Job's Pods deleted, the other's orphaned", within=40)
        for path in (f"{jobs_path(ns)}/gone", f"{jobs_path(ns)}/orphan"):

            async def absent(path: str = path) -> bool:
                return (await side.api.call("GET", path))[0] == 404

            await side.until(absent, f"{path} gone")
        orphan = (await pods_of(side, ns, "orphan"))[0]
        return {
            "background": (background[0], background[1].get("metadata", {}).get("finalizers")),
            "default": (default[0], default[1].get("metadata", {}).get("finalizers")),
            "orphan": seen(orphan),
        }

    await sides.same(probe)


async def until_job(side: Side, ns: str, name: str, **wanted: Any) -> None:
    """Until the Job's status has the ``wanted`` values (the real controller catches up within a second)."""

    async def holds() -> bool:
        status = await job_status(side, ns, name)
        return all(status.get(k) == v for k, v in wanted.items())

    await side.until(holds, f"Job {name} status {wanted}")


async def no_pods_left(side: Side, ns: str, name: str) -> None:
    async def none() -> bool:
        return not await pods_of(side, ns, name)

    await side.until(none, f"the Pods of {name} gone", within=40)


async def test_on_failure_restarts_count_against_the_backoff_limit(sides: JobSides) -> None:
    """restartPolicy OnFailure: the kubelet restarts the container; once the restarts reach
    backoffLimit the Job fails and its still-running Pod is deleted (and counted failed)."""
    ns = sides.ns

    async def probe(side: Side) -> Any:
        await side.ok("POST", jobs_path(ns), job("flaky", "exit 1", restart="OnFailure", backoffLimit=2))
        await until_condition(side, ns, "flaky", "Failed", within=60)
        await no_pods_left(side, ns, "flaky")
        return mask(await side.ok("GET", f"{jobs_path(ns)}/flaky"))

    answer = await sides.same(probe)
    assert answer["status"]["failed"] == 1
    assert answer["status"]["conditions"][1]["reason"] == "BackoffLimitExceeded"


async def test_deleting_a_job_in_the_foreground(sides: JobSides) -> None:
    """Foreground: the Job stays (foregroundDeletion) until its Pods are gone; the controller counts
    them failed as they go and drops their tracking finalizer, then the Job goes."""
    ns = sides.ns

    async def probe(side: Side) -> Any:
        await side.ok("POST", jobs_path(ns), job("fg", "sleep 300"))
        await until_running(side, ns, "fg")
        await until_job(side, ns, "fg", active=1, ready=1)
        status, deleting = await side.answer(
            "DELETE", f"{jobs_path(ns)}/fg", {"propagationPolicy": "Foreground"}
        )
        await no_pods_left(side, ns, "fg")

        async def job_gone() -> bool:
            return (await side.api.call("GET", f"{jobs_path(ns)}/fg"))[0] == 404

        await side.until(job_gone, "the Job gone")
        return {"delete": (status, deleting["metadata"], deleting["status"])}

    answer = await sides.same(probe)
    assert answer["delete"][1]["finalizers"] == ["foregroundDeletion"]


async def test_a_suspended_job_then_resumed(sides: JobSides) -> None:
    ns = sides.ns
    path = f"{jobs_path(ns)}/later"

    async def probe(side: Side) -> Any:
        await side.ok("POST", jobs_path(ns), job("later", "exit 0", suspend=True))
        await until_condition(side, ns, "later", "Suspended")
        suspended = mask(await side.ok("GET", path))
        pods_while_suspended = len(await pods_of(side, ns, "later"))
        await side.ok(
            "PATCH", path, {"spec": {"suspend": False}}, content_type="application/merge-patch+json"
        )
        await until_condition(side, ns, "later", "Complete")
        return {
            "suspended": suspended,
            "pods_while_suspended": pods_while_suspended,
            "resumed": mask(await side.ok("GET", path)),
        }

    answer = await sides.same(probe)
    conditions = answer["resumed"]["status"]["conditions"]
    assert [(c["type"], c["status"], c["reason"]) for c in conditions] == [
        ("Suspended", "False", "JobResumed"),
        ("SuccessCriteriaMet", "True", "CompletionsReached"),
        ("Complete", "True", "CompletionsReached"),
    ]


# ------------------------------------------------------------------------------ the emulator alone


def finished_pod(at: str, phase: str = "Failed") -> dict[str, Any]:
    terminated = {"exitCode": 1 if phase == "Failed" else 0, "finishedAt": at}
    return {
        "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {"phase": phase, "containerStatuses": [{"state": {"terminated": terminated}}]},
    }


def test_the_pod_failure_backoff_doubles_from_the_last_failure_and_a_success_resets_it() -> None:
    t0 = when("2026-01-01T00:01:00Z")
    once = jobspec.Backoff().after([], [finished_pod("2026-01-01T00:01:00Z")])
    assert (once.failures, once.remaining(t0, 10, 600)) == (1, 10)
    twice = once.after([], [finished_pod("2026-01-01T00:01:30Z")])
    assert twice.remaining(when("2026-01-01T00:01:35Z"), 10, 600) == 15  # 20 s from the last failure
    many = jobspec.Backoff(9, t0)
    assert many.remaining(t0, 10, 600) == 600  # capped
    assert twice.after([finished_pod("2026-01-01T00:02:00Z", "Succeeded")], []) == jobspec.Backoff()
    later = twice.after(
        [finished_pod("2026-01-01T00:02:00Z", "Succeeded")], [finished_pod("2026-01-01T00:02:05Z")]
    )
    assert (later.failures, later.last_failure) == (1, when("2026-01-01T00:02:05Z"))


async def test_job_backoff_scales_the_emulators_pod_failure_backoff(tmp_path: Path) -> None:
    """Emulator(job_backoff=...) for tests that retry failing Pods many times: 3 retries in seconds."""
    async with Emulator(job_backoff=0.2) as emu:
        kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig")
        await emu.create_object(job("retry", "exit 1", backoffLimit=3), namespace="default")
        async with kubelet(kubeconfig, "default", tmp_path / "kubelet"):

            async def failed() -> bool:
                got = emu.get_object("batch/v1", "jobs", "retry", "default") or {}
                return jobspec.finished(got)

            await eventually(failed, within=20, what="the Job failed")
        status = (emu.get_object("batch/v1", "jobs", "retry", "default") or {})["status"]
        assert (status["failed"], status["conditions"][-1]["reason"]) == (4, "BackoffLimitExceeded")


async def test_without_the_job_controller_a_job_gets_no_pods() -> None:
    async with Emulator(job_controller=False) as emu:
        await emu.create_object(job("idle", "exit 0"), namespace="default")
        await asyncio.sleep(0.2)
        assert emu.list_objects("v1", "pods", "default") == []
        assert (emu.get_object("batch/v1", "jobs", "idle", "default") or {})["status"] == {}


async def test_the_events_a_job_gets(sides: JobSides) -> None:
    """What the controller records on a Job that completes and on one past its deadline."""
    ns = sides.ns

    async def probe(side: Side) -> Any:
        await side.ok("POST", jobs_path(ns), job("told", "exit 0"))
        await side.ok("POST", jobs_path(ns), job("late", "sleep 300", activeDeadlineSeconds=2))
        await until_condition(side, ns, "told", "Complete")
        await until_condition(side, ns, "late", "Failed", within=40)

        async def listed() -> list[dict[str, Any]]:
            got = await side.ok("GET", f"/api/v1/namespaces/{ns}/events")
            return [e for e in got["items"] if e["involvedObject"].get("kind") == "Job"]

        async def recorded() -> bool:  # the real recorder writes them asynchronously
            reasons = {e["reason"] for e in await listed()}
            return {"Completed", "DeadlineExceeded"} <= reasons

        await side.until(recorded, "the Jobs' final Events")
        out = []
        for event in await listed():
            event["metadata"]["name"] = re.sub(r"\.[0-9a-f]+$", ".<nanoseconds>", event["metadata"]["name"])
            event["message"] = re.sub(r"-[a-z0-9]{5}$", "-<suffix>", event["message"])
            out.append(mask(event))
        return sorted(out, key=lambda e: (e["involvedObject"]["name"], e["reason"]))

    answer = await sides.same(probe)
    assert [(e["involvedObject"]["name"], e["type"], e["reason"], e["message"]) for e in answer] == [
        ("late", "Warning", "DeadlineExceeded", "Job was active longer than specified deadline"),
        ("late", "Normal", "SuccessfulCreate", "Created pod: late-<suffix>"),
        ("late", "Normal", "SuccessfulDelete", "Deleted pod: late-<suffix>"),
        ("told", "Normal", "Completed", "Job completed"),
        ("told", "Normal", "SuccessfulCreate", "Created pod: told-<suffix>"),
    ]


async def test_the_same_event_again_counts_in_the_first(sides: JobSides) -> None:
    """Suspended, resumed, suspended and resumed again: the second Suspended and Resumed Events are
    the first ones with ``count: 2`` (the event recorder's correlator, on both)."""
    ns = sides.ns
    path = f"{jobs_path(ns)}/twice"

    async def probe(side: Side) -> Any:
        await side.ok("POST", jobs_path(ns), job("twice", "sleep 300", suspend=True))
        await until_condition(side, ns, "twice", "Suspended")
        for suspend in (False, True, False):

            async def flipped(suspend: bool = suspend) -> bool:
                conditions = (await job_status(side, ns, "twice")).get("conditions") or []
                wanted = "True" if suspend else "False"
                return any(c["type"] == "Suspended" and c["status"] == wanted for c in conditions)

            await side.ok(
                "PATCH", path, {"spec": {"suspend": suspend}}, content_type="application/merge-patch+json"
            )
            await side.until(flipped, f"the Job suspend={suspend}")

        async def counted() -> dict[str, int]:
            got = await side.ok("GET", f"/api/v1/namespaces/{ns}/events")
            return {
                e["reason"]: e["count"]
                for e in got["items"]
                if e["involvedObject"].get("name") == "twice" and e["reason"] in ("Suspended", "Resumed")
            }

        async def both_twice() -> bool:
            return await counted() == {"Suspended": 2, "Resumed": 2}

        await side.until(both_twice, "Suspended and Resumed counted twice")
        return await counted()

    await sides.same(probe)


async def test_an_evicted_pod_is_replaced(sides: JobSides) -> None:
    """An eviction (a drain's) is a deletion the Job replaces, as the MCO's builds rely on; the evicted
    Pod carries the DisruptionTarget condition while it terminates."""
    ns = sides.ns

    async def probe(side: Side) -> Any:
        await side.ok("POST", jobs_path(ns), job("evicted", "sleep 300", terminationGracePeriodSeconds=30))
        first = (await until_running(side, ns, "evicted"))[0]
        name = first["metadata"]["name"]
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}}
        evicted = await side.answer("POST", f"/api/v1/namespaces/{ns}/pods/{name}/eviction", eviction)
        status, terminating = await side.answer("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
        conditions = sorted(
            (c["type"], c["status"], c.get("reason"), c.get("message"))
            for c in (terminating.get("status") or {}).get("conditions") or []
        )
        await until_job(side, ns, "evicted", active=1, ready=1, failed=1)
        return {"evicted": evicted, "terminating": (status, conditions)}

    await sides.same(probe)


async def patch_job(side: Side, ns: str, name: str, patches: dict[str, Any]) -> dict[str, Any]:
    """Each merge patch's answer: (code, spec) when it applies, (code, reason, causes, message) when not."""
    out: dict[str, Any] = {}
    for what, patch in patches.items():
        status, body = await side.answer(
            "PATCH", f"{jobs_path(ns)}/{name}", patch, content_type="application/merge-patch+json"
        )
        if status < 300:
            out[what] = (status, body["spec"])
        else:
            causes = [
                {**c, "message": re.sub(UID, "<uid>", c["message"])}
                for c in (body.get("details") or {}).get("causes") or []
            ]
            out[what] = (status, body.get("reason"), causes, re.sub(UID, "<uid>", body.get("message", "")))
    return out


async def test_the_immutable_fields_of_a_job(sides: JobSides) -> None:
    """A running Job takes a new backoffLimit, parallelism or deadline, not new completions, mode or
    selector."""
    ns = sides.ns

    async def probe(side: Side) -> Any:
        await side.ok("POST", jobs_path(ns), job("fixed", "sleep 300"))
        return await patch_job(
            side,
            ns,
            "fixed",
            {
                "mutable": {"spec": {"backoffLimit": 2, "parallelism": 1, "activeDeadlineSeconds": 600}},
                "completions": {"spec": {"completions": 2}},
                "completion_mode": {"spec": {"completionMode": "Indexed"}},
                "selector": {"spec": {"selector": {"matchLabels": {"app": "fixed"}}}},
            },
        )

    answer = await sides.same(probe)
    assert answer["completions"][:2] == (422, "Invalid")


async def test_known_difference_the_wording_of_an_immutable_template(sides: JobSides) -> None:
    """Changing a running Job's template is refused on both (422, cause spec.template, "field is
    immutable"), but the real server prints the template's internal Go type in the message (field
    names capitalised, every unset pointer as null), the emulator the template as the API has it."""
    ns = sides.ns

    async def probe(side: Side) -> Any:
        await side.ok("POST", jobs_path(ns), job("frozen", "sleep 300"))
        patch = {"spec": {"template": {"spec": {"terminationGracePeriodSeconds": 9}}}}
        return (await patch_job(side, ns, "frozen", {"template": patch}))["template"]

    emulator, real = await sides.run(probe)
    for code, reason, causes, message in (emulator, real):
        assert (code, reason, [(c["reason"], c["field"]) for c in causes]) == (
            422,
            "Invalid",
            [("FieldValueInvalid", "spec.template")],
        )
        assert message.startswith('Job.batch "frozen" is invalid: spec.template: Invalid value: ')
        assert message.endswith(": field is immutable")
    assert '"SchedulingGroup":null' in real[3] and '"SchedulingGroup"' not in emulator[3]
    assert '"containers":[' in emulator[3] and '"containers":[' not in real[3]


async def test_a_namespace_deleted_with_a_running_job_goes_away(tmp_path: Path) -> None:
    """Namespace deletion takes the Job, the controller drops its Pods' tracking finalizer, the
    kubelet stops them, and the namespace is gone."""
    async with Emulator() as emu:
        await emu.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}})
        await emu.create_object(job("busy", "sleep 300"), namespace="doomed")
        kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig")
        async with kubelet(kubeconfig, "doomed", tmp_path / "kubelet"):

            def running() -> bool:
                pods = emu.list_objects("v1", "pods", "doomed")
                return any((p.get("status") or {}).get("phase") == "Running" for p in pods)

            await eventually(running, within=20, what="the Job's Pod running")
            async with kclient.connect(KubeSettings(kubeconfig=str(kubeconfig))) as kube:
                await kube.delete(NAMESPACES, "doomed")
            await eventually(
                lambda: emu.get_object("v1", "namespaces", "doomed") is None,
                within=20,
                what="the namespace gone",
            )
