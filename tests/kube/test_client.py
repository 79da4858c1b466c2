"""The client layer against the emulator over real HTTPS: retries, errors, list-then-watch, caches.

Every test that takes ``kube`` runs over both HTTP transports (aiohttp's, and ``Http1`` of the builder).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube.cache import Informer
from mcosup.kube.resources import CONFIGMAPS, MACHINECONFIGPOOLS, NAMESPACES
from mcosup.runtime.metrics import Metrics
from mcosup.runtime.settings import KubeSettings
from waiting import eventually

NS = "kube-tests"


TRANSPORTS = pytest.mark.parametrize("light", [False, True], ids=["aiohttp", "http1"])


@pytest.fixture(params=[False, True], ids=["aiohttp", "http1"])
async def kube(admin_kubeconfig: Path, request: pytest.FixtureRequest) -> AsyncIterator[kclient.Kube]:
    fast = kclient.errors.RetryPolicy(attempts=5, base=0.01, cap=0.5)
    async with kclient.connect(
        KubeSettings(kubeconfig=str(admin_kubeconfig), watch_timeout=30), retry=fast, light=request.param
    ) as k:
        try:
            await k.create(NAMESPACES, {"metadata": {"name": NS}})
        except errors.AlreadyExists:
            pass
        yield k


def cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


async def test_crud_and_conflict(kube: kclient.Kube) -> None:
    created = await kube.create(CONFIGMAPS, cm("a", k="1"), namespace=NS)
    with pytest.raises(errors.AlreadyExists):
        await kube.create(CONFIGMAPS, cm("a"), namespace=NS)
    stale = dict(created, data={"k": "stale"})
    await kube.patch(CONFIGMAPS, "a", {"data": {"k": "2"}}, namespace=NS)
    with pytest.raises(errors.Conflict) as info:
        await kube.replace(CONFIGMAPS, "a", stale, namespace=NS)
    assert info.value.status == 409 and not isinstance(info.value, errors.AlreadyExists)
    assert (await kube.get(CONFIGMAPS, "a", namespace=NS))["data"] == {"k": "2"}
    await kube.delete(CONFIGMAPS, "a", namespace=NS)
    with pytest.raises(errors.NotFound):
        await kube.get(CONFIGMAPS, "a", namespace=NS)


async def test_429_with_retry_after_and_503s_are_retried_then_succeed(
    kube: kclient.Kube, emulator: Any
) -> None:
    await kube.create(CONFIGMAPS, cm("r", k="v"), namespace=NS)
    throttle = emulator.faults.fail(429, method="GET", path="/configmaps/r$", times=2, retry_after=0)
    unavailable = emulator.faults.fail(503, method="GET", path="/configmaps/r$", times=2)
    got = await kube.get(CONFIGMAPS, "r", namespace=NS)
    assert got["data"] == {"k": "v"}
    assert throttle.hits == 2 and unavailable.hits == 2


async def test_retries_give_up_with_the_error(kube: kclient.Kube, emulator: Any) -> None:
    emulator.faults.fail(503, method="GET", path="/configmaps/never$", times=None)
    with pytest.raises(errors.ServerError):
        await kube.get(CONFIGMAPS, "never", namespace=NS)


async def test_custom_resources_get_merge_patches(kube: kclient.Kube) -> None:
    pool = {
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfigPool",
        "metadata": {"name": "kube-test-pool"},
        "spec": {"machineConfigSelector": {"matchLabels": {"x": "y"}}, "nodeSelector": {"matchLabels": {}}},
    }
    await kube.create(MACHINECONFIGPOOLS, pool)
    patched = await kube.patch(MACHINECONFIGPOOLS, "kube-test-pool", {"metadata": {"labels": {"a": "b"}}})
    assert patched["metadata"]["labels"] == {"a": "b"}
    with pytest.raises(ValueError, match="strategic"):
        await kube.patch(MACHINECONFIGPOOLS, "kube-test-pool", {}, patch_type="strategic")


async def test_cache_is_listed_only_after_the_initial_list(kube: kclient.Kube, emulator: Any) -> None:
    await kube.create(CONFIGMAPS, cm("pre"), namespace=NS)
    emulator.faults.delay(0.5, method="GET", path=f"/namespaces/{NS}/configmaps$", times=1)
    informer = Informer(kube, CONFIGMAPS, namespace=NS)
    task = asyncio.ensure_future(informer.run())
    try:
        await asyncio.sleep(0.2)
        assert not informer.listed.is_set(), "listed before the first list answered"
        assert informer.get("pre", NS) is None
        await asyncio.wait_for(informer.listed.wait(), 10)
        assert informer.get("pre", NS) is not None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_cut_watch_resumes_without_losing_or_duplicating_events(
    kube: kclient.Kube, emulator: Any
) -> None:
    metrics = Metrics()
    informer = Informer(kube, CONFIGMAPS, namespace=NS, metrics=metrics)
    seen: collections.Counter[tuple[str, str]] = collections.Counter()
    informer.subscribe(lambda kind, obj: seen.update([(kind, obj["metadata"]["name"])]))
    task = asyncio.ensure_future(informer.run())
    try:
        await asyncio.wait_for(informer.listed.wait(), 10)
        for i in range(5):
            await kube.create(CONFIGMAPS, cm(f"w{i}"), namespace=NS)
        await eventually(lambda: all(seen[("ADDED", f"w{i}")] for i in range(5)), what="first five events")
        for abrupt in (False, True):
            assert emulator.faults.cut_watches(abrupt=abrupt) >= 1
        for i in range(5, 10):
            await kube.create(CONFIGMAPS, cm(f"w{i}"), namespace=NS)
        await kube.patch(CONFIGMAPS, "w0", {"data": {"after": "cut"}}, namespace=NS)
        await eventually(
            lambda: all(seen[("ADDED", f"w{i}")] for i in range(10)) and seen[("MODIFIED", "w0")],
            what="events after the cut",
        )
        # Watch events arrive in order: once a sentinel made last is seen, any duplicate would have been.
        await kube.create(CONFIGMAPS, cm("sentinel"), namespace=NS)
        await eventually(lambda: seen[("ADDED", "sentinel")] == 1, what="the sentinel")
        assert all(seen[("ADDED", f"w{i}")] == 1 for i in range(10)), seen
        assert seen[("MODIFIED", "w0")] == 1
        assert informer.get("w0", NS)["data"] == {"after": "cut"}  # type: ignore[index]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_expired_watch_relists_and_cache_converges(kube: kclient.Kube, emulator: Any) -> None:
    metrics = Metrics()
    informer = Informer(kube, CONFIGMAPS, namespace=NS, metrics=metrics)
    kinds: list[tuple[str, str]] = []
    informer.subscribe(lambda kind, obj: kinds.append((kind, obj["metadata"]["name"])))
    await kube.create(CONFIGMAPS, cm("keep"), namespace=NS)
    await kube.create(CONFIGMAPS, cm("doomed"), namespace=NS)
    # The watch cannot see changes while it is down: block it, change state, compact, cut.
    task = asyncio.ensure_future(informer.run())
    try:
        await asyncio.wait_for(informer.listed.wait(), 10)
        emulator.faults.fail(503, method="GET", path=f"/namespaces/{NS}/configmaps$", times=3)
        emulator.faults.cut_watches(abrupt=True)
        await kube.delete(CONFIGMAPS, "doomed", namespace=NS)
        await kube.create(CONFIGMAPS, cm("new"), namespace=NS)
        emulator.faults.compact()
        await eventually(
            lambda: informer.get("doomed", NS) is None and informer.get("new", NS) is not None,
            what="cache to converge after 410",
        )
        assert ("DELETED", "doomed") in kinds and ("ADDED", "new") in kinds
        expired = metrics.registry.get_sample_value(
            "mcosup_watch_restarts_total", {"resource": "configmaps", "cause": "expired"}
        )
        assert expired and expired >= 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_broken_kubeconfig_is_named_in_the_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.kubeconfig"
    with pytest.raises(errors.ApiError, match=r"kubeconfig .*nope\.kubeconfig does not exist"):
        async with kclient.connect(KubeSettings(kubeconfig=str(missing))):
            pass
    garbage = tmp_path / "garbage.kubeconfig"
    garbage.write_text("clusters: 3\n")
    with pytest.raises(errors.ApiError, match=r"garbage\.kubeconfig"):
        async with kclient.connect(KubeSettings(kubeconfig=str(garbage))):
            pass


@TRANSPORTS
async def test_the_environment_proxy_applies_unless_no_proxy_exempts_the_server(
    admin_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch, light: bool
) -> None:
    settings = KubeSettings(kubeconfig=str(admin_kubeconfig))
    once = errors.RetryPolicy(attempts=1)
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens there
    async with kclient.connect(settings, retry=once, light=light) as k:
        with pytest.raises(errors.ConnectionFailed):
            await k.list(NAMESPACES)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    async with kclient.connect(settings, retry=once, light=light) as k:
        await k.list(NAMESPACES)


async def test_an_index_groups_the_cached_objects_as_they_change(kube: kclient.Kube) -> None:
    informer = Informer(kube, CONFIGMAPS, namespace=NS)
    await kube.create(CONFIGMAPS, cm("early", node="a"), namespace=NS)
    await kube.create(CONFIGMAPS, cm("nowhere"), namespace=NS)
    task = asyncio.ensure_future(informer.run())
    try:
        await asyncio.wait_for(informer.listed.wait(), 10)
        by_node = informer.index(lambda obj: (obj.get("data") or {}).get("node"))  # after the list

        def names_on(node: str) -> list[str]:
            return sorted(o["metadata"]["name"] for o in by_node.get(node))

        assert names_on("a") == ["early"] and names_on("b") == []
        await kube.create(CONFIGMAPS, cm("late", node="a"), namespace=NS)
        await eventually(lambda: names_on("a") == ["early", "late"], what="a new object in its group")
        await kube.patch(CONFIGMAPS, "early", {"data": {"node": "b"}}, namespace=NS)
        await eventually(lambda: names_on("b") == ["early"], what="an object moved to another group")
        assert names_on("a") == ["late"]
        await kube.delete(CONFIGMAPS, "late", namespace=NS)
        await eventually(lambda: names_on("a") == [], what="a deleted object gone from its group")
        assert [o["data"]["node"] for o in by_node.get("b")] == ["b"], "the group holds the newest version"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_derived_value_is_computed_once_per_version_of_an_object(kube: kclient.Kube) -> None:
    informer = Informer(kube, CONFIGMAPS, namespace=NS)
    computed: list[str] = []

    def size(obj: dict[str, Any]) -> int:
        computed.append(obj["metadata"]["resourceVersion"])
        return len(obj.get("data") or {})

    sizes = informer.derive(size)
    await kube.create(CONFIGMAPS, cm("derived", a="1"), namespace=NS)
    task = asyncio.ensure_future(informer.run())
    try:
        await asyncio.wait_for(informer.listed.wait(), 10)
        assert [sizes.get("derived", NS) for _ in range(3)] == [1, 1, 1]
        assert len(computed) == 1
        await kube.patch(CONFIGMAPS, "derived", {"data": {"b": "2"}}, namespace=NS)
        await eventually(lambda: sizes.get("derived", NS) == 2, what="the value of the new version")
        assert sizes.get("derived", NS) == 2
        assert len(computed) == 2
        await kube.delete(CONFIGMAPS, "derived", namespace=NS)
        await eventually(lambda: sizes.get("derived", NS) is None, what="the deletion")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
