"""The admission server over real TLS: verdicts, 400s with reasons, limits, metrics, and fuzzed input."""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import json
import ssl
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from webhook_support import CertFiles, Webhook, admission_review

from mcosup.http.admission import admission_app, run_admission_server, serving_tls
from mcosup.http.tls import CertFileReloader
from mcosup.model import names
from mcosup.runtime.metrics import WebhookMetrics
from webhooks.facts import ClusterFacts

NS = names.DEFAULT_NAMESPACE
LAYERED = ClusterFacts.from_objects(
    pools=[
        {
            "metadata": {"name": "worker", "labels": {names.LAYERING_ENABLED: ""}},
            "spec": {"machineConfigSelector": {"matchLabels": {names.ROLE_LABEL: "worker"}}},
        }
    ]
)


def mc_review(uid: str, *paths: str, role: str = "worker", dry_run: bool = False) -> dict[str, Any]:
    data = "data:;base64," + base64.b64encode(b"x").decode()
    obj = {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfig",
        "metadata": {"name": "50-test", "labels": {names.ROLE_LABEL: role}},
        "spec": {
            "config": {
                "ignition": {"version": "3.4.0"},
                "storage": {"files": [{"path": p, "mode": 420, "contents": {"source": data}} for p in paths]},
            }
        },
    }
    return admission_review("MachineConfig", obj, uid=uid, dry_run=dry_run)


async def post(webhook: Webhook, body: bytes | dict[str, Any], path: str = "") -> tuple[int, Any]:
    data = io.BytesIO(body if isinstance(body, bytes) else orjson.dumps(body))
    async with webhook.client.post(
        webhook.url + path, data=data, headers={"Content-Type": "application/json"}
    ) as resp:
        raw = await resp.read()
        return resp.status, orjson.loads(raw) if resp.content_type == "application/json" else raw.decode()


async def test_verdicts_over_tls_echo_the_uid(webhook: Webhook) -> None:
    webhook.facts[0] = LAYERED
    status, answer = await post(webhook, mc_review("uid-deny", "/var/lib/x"), "/machineconfigs")
    assert status == 200
    response = answer["response"]
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert response["uid"] == "uid-deny" and response["allowed"] is False
    assert response["status"]["code"] == 403
    assert (
        "/var/lib/x" in response["status"]["message"]
        and "layered pool worker" in response["status"]["message"]
    )

    status, answer = await post(webhook, mc_review("uid-warn", "/etc/x"))
    assert status == 200 and answer["response"]["allowed"] is True and answer["response"]["uid"] == "uid-warn"
    assert "triggers an image build" in answer["response"]["warnings"][0]

    status, answer = await post(webhook, mc_review("uid-legacy", "/var/lib/x", role="master", dry_run=True))
    assert answer["response"] == {"uid": "uid-legacy", "allowed": True}


async def test_malformed_requests_get_400_with_the_reason(webhook: Webhook) -> None:
    status, text = await post(webhook, b"{not json")
    assert status == 400 and "malformed AdmissionReview: body is not JSON" in text
    review = mc_review("u")
    del review["request"]["uid"]
    status, text = await post(webhook, review)
    assert status == 400 and "request.uid is required" in text
    assert webhook.sample("mcosup_webhook_requests_total", kind="unknown", result="malformed") == 2


async def test_bodies_over_the_limit_get_400(webhook: Webhook) -> None:
    status, text = await post(webhook, b" " * (5 * 1024 * 1024))
    assert status == 400 and "larger than 4194304 bytes" in text


async def test_huge_machineconfig_under_the_limit_is_judged(webhook: Webhook) -> None:
    review = mc_review("big", *(f"/etc/big/{i}" for i in range(6000)))
    body = orjson.dumps(review)
    assert 300_000 < len(body) < 4 * 1024 * 1024
    status, answer = await post(webhook, body)
    assert status == 200 and answer["response"]["allowed"] is True


async def test_metrics_count_results_and_latency(webhook: Webhook) -> None:
    webhook.facts[0] = LAYERED
    await post(webhook, mc_review("a", "/var/x"))
    await post(webhook, mc_review("b", "/etc/x"))
    await post(webhook, mc_review("c", "/etc/y"))
    assert webhook.sample("mcosup_webhook_requests_total", kind="MachineConfig", result="denied") == 1
    assert webhook.sample("mcosup_webhook_requests_total", kind="MachineConfig", result="allowed") == 2
    assert webhook.sample("mcosup_webhook_latency_seconds_count") == 3


async def test_only_tls_12_and_newer_is_served(webhook: Webhook, cert_files: CertFiles) -> None:
    old = ssl.create_default_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the point is to offer the deprecated versions
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await asyncio.open_connection("127.0.0.1", webhook.port, ssl=old, server_hostname="localhost")
    for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        context = cert_files.client_context()
        context.minimum_version = context.maximum_version = version
        _, writer = await asyncio.open_connection(
            "127.0.0.1", webhook.port, ssl=context, server_hostname="localhost"
        )
        assert writer.get_extra_info("ssl_object").version() == name
        writer.close()
        await writer.wait_closed()


async def test_async_facts_providers_and_the_run_loop(cert_files: CertFiles) -> None:
    async def facts() -> ClusterFacts:
        await asyncio.sleep(0)
        return LAYERED

    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(
        run_admission_server(
            facts,
            tls=CertFileReloader(cert_files.cert_file, cert_files.key_file),
            metrics=WebhookMetrics(CollectorRegistry()),
            host="127.0.0.1",
            port=0,
            reload_interval=0.05,
            started=bound.set_result,
        )
    )
    try:
        port = await asyncio.wait_for(bound, 10)
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=cert_files.client_context())
        ) as client:
            async with client.post(
                f"https://127.0.0.1:{port}/validate", data=orjson.dumps(mc_review("x", "/run/x"))
            ) as r:
                answer = orjson.loads(await r.read())
        assert answer["response"]["allowed"] is False
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server


# ---- never crash: hypothesis over hostile bodies ---------------------------------------------------------


class ThreadedServer:
    """The server on its own event loop in a thread, so hypothesis can drive it from a plain function."""

    def __init__(self, cert_files: CertFiles) -> None:
        self.cert_files = cert_files
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        tls = CertFileReloader(self.cert_files.cert_file, self.cert_files.key_file)
        app = admission_app(
            lambda: LAYERED, metrics=WebhookMetrics(CollectorRegistry()), max_body_bytes=1024 * 1024
        )
        async with serving_tls(app, tls, "127.0.0.1", 0) as port:
            self.port = port
            self.ready.set()
            await self._stop.wait()

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def threaded(cert_files: CertFiles) -> Iterator[tuple[ThreadedServer, ssl.SSLContext]]:
    with ThreadedServer(cert_files) as server:
        yield server, cert_files.client_context()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

VALID_BODIES = [
    mc_review("v1", "/var/lib/x", "/etc/ok"),
    mc_review("v2", "/etc/ok", role="master"),
    {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "n1",
            "kind": {"group": "", "version": "v1", "kind": "Node"},
            "resource": {"group": "", "version": "v1", "resource": "nodes"},
            "operation": "UPDATE",
            "userInfo": {"username": "x", "extra": {names.NODE_NAME_EXTRA: ["a"]}},
            "object": {"metadata": {"name": "a", "annotations": {names.DESIRED_CONFIG: "r"}}},
            "oldObject": {"metadata": {"name": "a", "labels": {names.DAEMON_MODE: "layered"}}},
        },
    },
]
KINDS = ["MachineConfig", "MachineConfigPool", "Node", "ConfigMap", "Pod", "", "machineconfig"]


def _mutate(body: dict[str, Any], path: list[str], value: Any, delete: bool) -> dict[str, Any]:
    copy: dict[str, Any] = orjson.loads(orjson.dumps(body))
    target: dict[str, Any] = copy
    for key in path[:-1]:
        nxt = target.get(key) if isinstance(target, dict) else None
        if not isinstance(nxt, dict):
            return copy
        target = nxt
    if delete:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return copy


FIELD_PATHS = [
    ["request"],
    ["request", "uid"],
    ["request", "kind"],
    ["request", "kind", "kind"],
    ["request", "kind", "group"],
    ["request", "operation"],
    ["request", "userInfo"],
    ["request", "userInfo", "extra"],
    ["request", "object"],
    ["request", "object", "metadata"],
    ["request", "object", "spec"],
    ["request", "object", "spec", "config"],
    ["request", "object", "spec", "config", "storage"],
    ["request", "object", "spec", "config", "ignition"],
    ["request", "object", "spec", "machineConfigSelector"],
    ["request", "object", "data"],
    ["request", "oldObject"],
    ["request", "oldObject", "metadata"],
    ["request", "dryRun"],
    ["apiVersion"],
]


def _dumps(value: Any) -> bytes:
    # The stdlib encoder: unlike orjson it writes integers beyond 64 bits, which a hostile client may send.
    return json.dumps(value).encode()


hostile_bodies = st.one_of(
    st.binary(max_size=512),
    st.builds(
        lambda body, cut: _dumps(body)[:cut],
        st.sampled_from(VALID_BODIES),
        st.integers(min_value=0, max_value=2000),
    ),
    st.builds(
        lambda body, path, value, delete: _dumps(_mutate(body, path, value, delete)),
        st.sampled_from(VALID_BODIES),
        st.sampled_from(FIELD_PATHS),
        json_values,
        st.booleans(),
    ),
    st.builds(
        lambda body, kind, group: _dumps(
            _mutate(body, ["request", "kind"], {"group": group, "version": "v1", "kind": kind}, False)
        ),
        st.sampled_from(VALID_BODIES),
        st.sampled_from(KINDS),
        st.sampled_from(["", names.GROUP, "apps"]),
    ),
    json_values.map(_dumps),
)


def _post(port: int, context: ssl.SSLContext, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        connection.request("POST", "/validate", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=hostile_bodies)
def test_hostile_bodies_get_a_verdict_or_a_400_never_a_crash(
    threaded: tuple[ThreadedServer, ssl.SSLContext], body: bytes
) -> None:
    server, context = threaded
    status, raw = _post(server.port, context, body)
    assert status in (200, 400), (status, raw[:300])
    if status == 200:
        answer = orjson.loads(raw)
        sent = json.loads(body)
        assert answer["response"]["uid"] == sent["request"]["uid"]
        assert isinstance(answer["response"]["allowed"], bool)
    else:
        assert raw.startswith(b"malformed AdmissionReview: ") or b"larger than" in raw


def test_huge_and_oversized_bodies(threaded: tuple[ThreadedServer, ssl.SSLContext], tmp_path: Path) -> None:
    server, context = threaded
    big = mc_review("huge", *(f"/var/{i}" for i in range(9000)))
    body = orjson.dumps(big)
    assert len(body) < 1024 * 1024
    status, raw = _post(server.port, context, body)
    assert status == 200 and orjson.loads(raw)["response"]["allowed"] is False
    status, raw = _post(server.port, context, b"[" * (2 * 1024 * 1024))
    assert status == 400 and b"larger than 1048576 bytes" in raw
    status, raw = _post(server.port, context, b"[" * 100_000)
    assert status == 400
