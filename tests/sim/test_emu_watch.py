"""Watches: initial state, resume, 410 Expired, bookmarks, timeouts, selector transitions, cuts; and the
faults that end connections: a reset, an API-server restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from emu_http import Api, cm
from kubernetes_asyncio import client, config, watch

from mcosup.kube import client as kclient
from mcosup.runtime.settings import KubeSettings
from mcosup.sim.apiserver import Emulator
from waiting import eventually

CMS = "/api/v1/namespaces/default/configmaps"


class Collector:
    """Runs a watch in the background and keeps its events."""

    def __init__(self, api: Api, path: str, **params: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.ended = asyncio.Event()
        self.error: BaseException | None = None
        self._task = asyncio.create_task(self._run(api, path, params))

    async def _run(self, api: Api, path: str, params: dict[str, str]) -> None:
        try:
            async for event in api.watch(path, **params):
                self.events.append(event)
        except aiohttp.ClientError as exc:
            self.error = exc
        finally:
            self.ended.set()

    def seen(self) -> list[tuple[str, str]]:
        return [
            (e["type"], e["object"]["metadata"].get("name", ""))
            for e in self.events
            if e["type"] != "BOOKMARK"
        ]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
async def collect(api: Api) -> AsyncIterator[Any]:
    collectors: list[Collector] = []

    def start(path: str, **params: str) -> Collector:
        c = Collector(api, path, **params)
        collectors.append(c)
        return c

    yield start
    for c in collectors:
        await c.close()


async def test_watch_sends_current_state_then_changes(api: Api, collect: Any) -> None:
    await api.post(CMS, cm("a"))
    w = collect(CMS, timeoutSeconds="30")
    await eventually(lambda: w.seen() == [("ADDED", "a")], what="the initial ADDED")
    await api.post(CMS, cm("b"))
    await api.patch(f"{CMS}/a", {"data": {"k": "v"}})
    await api.delete(f"{CMS}/b")
    expected = [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    await eventually(lambda: w.seen() == expected, what="the live events")
    modified = w.events[2]["object"]
    assert modified["kind"] == "ConfigMap" and modified["data"] == {"k": "v"}


async def test_watch_resumes_after_a_resource_version(api: Api, collect: Any) -> None:
    _, a = await api.post(CMS, cm("a"))
    await api.patch(f"{CMS}/a", {"data": {"k": "1"}})
    await api.post(CMS, cm("b"))
    w = collect(CMS, resourceVersion=a["metadata"]["resourceVersion"], timeoutSeconds="30")
    await eventually(
        lambda: w.seen() == [("MODIFIED", "a"), ("ADDED", "b")], what="the events after a's creation"
    )


async def test_a_resource_version_older_than_the_window_gets_410(tmp_path: Path, mco_fixtures: Path) -> None:
    async with Emulator(history_window=3) as emu:
        import ssl

        ctx = ssl.create_default_context(cafile=str(emu.ca_path))
        async with aiohttp.ClientSession() as session:
            api = Api(session, emu.url, ctx, emu.add_token("admin", ["system:masters"]))
            _, first = await api.post(CMS, cm("a"))
            for i in range(4):
                await api.patch(f"{CMS}/a", {"data": {"i": str(i)}})
            events = [e async for e in api.watch(CMS, resourceVersion=first["metadata"]["resourceVersion"])]
            assert len(events) == 1 and events[0]["type"] == "ERROR"
            status = events[0]["object"]
            assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
            assert status["message"].startswith(
                f"too old resource version: {first['metadata']['resourceVersion']} ("
            )
            # A version inside the window still resumes.
            _, latest = await api.get(f"{CMS}/a")
            await api.patch(f"{CMS}/a", {"data": {"i": "last"}})
            stream = api.watch(CMS, resourceVersion=latest["metadata"]["resourceVersion"])
            event = await anext(stream)
            assert (event["type"], event["object"]["data"]) == ("MODIFIED", {"i": "last"})
            await stream.aclose()


async def test_forced_compaction_expires_every_older_version(api: Api, emulator: Emulator) -> None:
    _, a = await api.post(CMS, cm("a"))
    await api.post(CMS, cm("b"))
    emulator.faults.compact()
    events = [e async for e in api.watch(CMS, resourceVersion=a["metadata"]["resourceVersion"])]
    assert [e["object"]["code"] for e in events] == [410]


async def test_bookmarks_when_asked_and_one_before_the_timeout(api: Api, emulator: Emulator) -> None:
    emulator.bookmark_interval = 0.2
    _, a = await api.post(CMS, cm("a"))
    rv = a["metadata"]["resourceVersion"]
    events = [
        e async for e in api.watch(CMS, resourceVersion=rv, allowWatchBookmarks="true", timeoutSeconds="1")
    ]
    assert events and all(e["type"] == "BOOKMARK" for e in events)
    assert events[-1]["object"] == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": rv},
    }
    # Without allowWatchBookmarks there are none: the stream just ends at the timeout.
    assert [e async for e in api.watch(CMS, resourceVersion=rv, timeoutSeconds="1")] == []


async def test_send_initial_events_ends_with_a_marked_bookmark(api: Api) -> None:
    await api.post(CMS, cm("a"))
    stream = api.watch(
        CMS, sendInitialEvents="true", resourceVersionMatch="NotOlderThan", allowWatchBookmarks="true"
    )
    first, second = await anext(stream), await anext(stream)
    await stream.aclose()
    assert first["type"] == "ADDED"
    assert second["type"] == "BOOKMARK"
    assert second["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_selector_transitions_are_added_and_deleted(api: Api, collect: Any) -> None:
    await api.post(CMS, {"metadata": {"name": "a", "labels": {"team": "x"}}})
    await api.post(CMS, {"metadata": {"name": "b"}})
    w = collect(CMS, labelSelector="team=x", timeoutSeconds="30")
    await eventually(lambda: w.seen() == [("ADDED", "a")], what="the initial matching object")
    await api.patch(f"{CMS}/b", {"metadata": {"labels": {"team": "x"}}})  # starts matching
    await api.patch(f"{CMS}/a", {"metadata": {"labels": {"team": "y"}}})  # stops matching
    await api.patch(f"{CMS}/a", {"data": {"ignored": "1"}})  # not matching: no event
    await api.patch(f"{CMS}/b", {"data": {"k": "v"}})
    expected = [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a"), ("MODIFIED", "b")]
    await eventually(lambda: w.seen() == expected, what="selector transitions")
    # As kube-apiserver's watch cache does: DELETED carries the last state that matched, at the version
    # of the change that made it leave (tests/sim/test_emu_conformance.py compares this with the real one).
    left, entered = w.events[2]["object"]["metadata"], w.events[1]["object"]["metadata"]
    assert left["labels"] == {"team": "x"}
    assert int(left["resourceVersion"]) > int(entered["resourceVersion"])


async def test_field_selector_watch_on_one_name_and_the_legacy_watch_path(api: Api, collect: Any) -> None:
    w = collect(CMS, fieldSelector="metadata.name=b", timeoutSeconds="30")
    legacy = collect("/api/v1/watch/namespaces/default/configmaps/b", timeoutSeconds="30")
    await api.post(CMS, cm("a"))
    await api.post(CMS, cm("b"))
    await eventually(
        lambda: w.seen() == [("ADDED", "b")] and legacy.seen() == [("ADDED", "b")], what="b only"
    )


async def test_cut_watches_ends_streams_cleanly_or_abruptly(
    api: Api, emulator: Emulator, collect: Any
) -> None:
    clean = collect(CMS, timeoutSeconds="60")
    await eventually(lambda: emulator.faults.cut_watches() == 1, what="the watch to be open")
    await asyncio.wait_for(clean.ended.wait(), 10)
    assert clean.error is None
    await eventually(
        lambda: not emulator.store.log(("", "configmaps")).watchers, what="the first watch to go"
    )
    abrupt = collect(CMS, timeoutSeconds="60")
    await eventually(
        lambda: emulator.faults.cut_watches(abrupt=True) == 1, what="the second watch to be open"
    )
    await asyncio.wait_for(abrupt.ended.wait(), 10)
    assert isinstance(abrupt.error, aiohttp.ClientPayloadError)


async def test_kubernetes_asyncio_watch(admin_kubeconfig: Path, api: Api) -> None:
    await api.post(CMS, cm("a"))
    loader = client.Configuration()
    await config.load_kube_config(config_file=str(admin_kubeconfig), client_configuration=loader)
    async with client.ApiClient(loader) as api_client:
        core = client.CoreV1Api(api_client)
        listed = await core.list_namespaced_config_map("default")
        assert [i.metadata.name for i in listed.items] == ["a"]
        rv = listed.metadata.resource_version
        await api.post(CMS, cm("b"))
        async with watch.Watch() as w:
            async for event in w.stream(
                core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=5
            ):
                assert (event["type"], event["object"].metadata.name) == ("ADDED", "b")
                break


async def test_kubernetes_asyncio_typed_crud_and_errors(admin_kubeconfig: Path) -> None:
    loader = client.Configuration()
    await config.load_kube_config(config_file=str(admin_kubeconfig), client_configuration=loader)
    async with client.ApiClient(loader) as api_client:
        core = client.CoreV1Api(api_client)
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="typed"), data={"k": "v"})
        created = await core.create_namespaced_config_map("default", body)
        assert created.metadata.uid and created.data == {"k": "v"}
        with pytest.raises(client.ApiException) as info:
            await core.create_namespaced_config_map("default", body)
        assert info.value.status == 409 and json.loads(info.value.body)["reason"] == "AlreadyExists"
        created.data = {"k": "2"}
        await core.replace_namespaced_config_map("typed", "default", created)
        with pytest.raises(client.ApiException) as info:
            await core.replace_namespaced_config_map("typed", "default", created)  # now stale
        assert info.value.status == 409 and json.loads(info.value.body)["reason"] == "Conflict"
        patched = await core.patch_namespaced_config_map(
            "typed", "default", [{"op": "add", "path": "/data/j", "value": "3"}]
        )
        assert patched.data == {"k": "2", "j": "3"}
        await core.delete_namespaced_config_map("typed", "default")
        with pytest.raises(client.ApiException) as info:
            await core.read_namespaced_config_map("typed", "default")
        assert info.value.status == 404


async def test_a_reset_drops_the_connection_and_the_client_retries(
    emulator: Emulator, tmp_path: Path
) -> None:
    path = emulator.write_kubeconfig(tmp_path / "admin.kubeconfig")
    rule = emulator.faults.reset(method="GET", path=r"/namespaces/default$", times=2)
    async with kclient.connect(KubeSettings(kubeconfig=str(path))) as kube:
        ns = await kube.request("GET", "/api/v1/namespaces/default")
    assert ns["metadata"]["name"] == "default"
    assert rule.hits == 2
    # No answer was logged for the dropped requests, and nothing failed on the server's side.
    assert [r.status for r in emulator.requests if r.path == "/api/v1/namespaces/default"] == [0, 0, 200]


async def test_a_restart_keeps_the_store_the_address_and_the_certificate(
    api: Api, emulator: Emulator, collect: Any
) -> None:
    status, _, _ = await api.call("POST", CMS, cm("before"))
    assert status == 201
    watch = collect(CMS, timeoutSeconds="60")
    await eventually(lambda: bool(emulator.store.log(("", "configmaps")).watchers), what="the watch open")
    url = emulator.url
    await emulator.restart(downtime=0.2)
    await asyncio.wait_for(watch.ended.wait(), 10)
    assert emulator.url == url
    # Same address, same CA: the client's TLS context still trusts it, and the object is still there.
    status, body, _ = await api.call("GET", f"{CMS}/before")
    assert (status, body["metadata"]["name"]) == (200, "before")
