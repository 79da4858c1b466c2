"""Validating admission webhooks configured by ValidatingWebhookConfiguration, called over real TLS."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from emu_http import Api, cm, webhook_server

from mcosup.sim.apiserver import Emulator

CMS = "/api/v1/namespaces/default/configmaps"
VWCS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


@dataclass
class Hook:
    """A webhook server: answers per `verdict`, records every AdmissionReview it receives."""

    port: int = 0
    ca_bundle: str = ""
    reviews: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    allowed: bool = False
    message: str = "no configmaps today"
    warnings: list[str] = field(default_factory=list)
    delay: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        review = await request.json()
        self.reviews.append(review)
        self.paths.append(request.path_qs)
        if self.delay:
            await asyncio.sleep(self.delay)
        response: dict[str, Any] = {"uid": review["request"]["uid"], "allowed": self.allowed}
        if not self.allowed:
            response["status"] = {"code": 403, "message": self.message}
        if self.warnings:
            response["warnings"] = self.warnings
        return web.json_response(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
        )


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    state = Hook()
    async with webhook_server(state.handle, "hook.mcosup.svc") as (port, ca_bundle):
        state.port, state.ca_bundle = port, ca_bundle
        yield state


def config(name: str, client_config: dict[str, Any], **webhook: Any) -> dict[str, Any]:
    rule = {
        "operations": ["CREATE", "UPDATE", "DELETE"],
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "resources": ["configmaps"],
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": f"{name}.example.com",
                "clientConfig": client_config,
                "rules": [rule],
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                **webhook,
            }
        ],
    }


def by_url(hook: Hook) -> dict[str, Any]:
    return {"url": f"https://127.0.0.1:{hook.port}/validate", "caBundle": hook.ca_bundle}


async def test_a_deny_all_webhook_blocks_creates_with_its_message(api: Api, hook: Hook) -> None:
    assert (await api.post(VWCS, config("deny", by_url(hook), timeoutSeconds=5)))[0] == 201
    status, body = await api.post(CMS, cm("blocked"))
    assert (status, body["code"], body["status"]) == (403, 403, "Failure")
    assert body["message"] == 'admission webhook "deny.example.com" denied the request: no configmaps today'
    assert (await api.get(f"{CMS}/blocked"))[0] == 404
    assert hook.paths == ["/validate?timeout=5s"]
    # Other resources are not matched by the rules.
    assert (await api.post("/api/v1/namespaces/default/secrets", {"metadata": {"name": "s"}}))[0] == 201


async def test_the_admission_review_is_complete(
    api: Api, emulator: Emulator, hook: Hook, tmp_path: Path
) -> None:
    hook.allowed = True
    await api.post(VWCS, config("watcher", by_url(hook)))
    token = emulator.add_token(
        "system:serviceaccount:mcosup:daemon",
        ["system:serviceaccounts"],
        {"authentication.kubernetes.io/node-name": ["n1"]},
    )
    as_daemon = api.as_token(token)
    await as_daemon.post(CMS, cm("a", k="1"), dryRun="All")
    await as_daemon.post(CMS, cm("a", k="1"))
    await as_daemon.patch(f"{CMS}/a", {"data": {"k": "2"}})
    await as_daemon.delete(f"{CMS}/a")
    requests = [r["request"] for r in hook.reviews]
    assert [(r["operation"], r["dryRun"]) for r in requests] == [
        ("CREATE", True),
        ("CREATE", False),
        ("UPDATE", False),
        ("DELETE", False),
    ]
    dry, create, update, delete = requests
    assert all(
        r["uid"] and r["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"} for r in requests
    )
    assert create["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
    assert (create["name"], create["namespace"]) == ("a", "default")
    assert create["userInfo"]["username"] == "system:serviceaccount:mcosup:daemon"
    assert set(create["userInfo"]["groups"]) == {"system:serviceaccounts", "system:authenticated"}
    assert create["userInfo"]["extra"] == {"authentication.kubernetes.io/node-name": ["n1"]}
    assert create["object"]["data"] == {"k": "1"} and create["oldObject"] is None
    assert create["options"]["kind"] == "CreateOptions" and dry["options"]["dryRun"] == ["All"]
    assert update["object"]["data"] == {"k": "2"} and update["oldObject"]["data"] == {"k": "1"}
    assert update["options"]["kind"] == "UpdateOptions"
    assert delete["object"] is None and delete["oldObject"]["data"] == {"k": "2"}
    assert delete["options"]["kind"] == "DeleteOptions"


async def test_warnings_reach_the_client(api: Api, hook: Hook) -> None:
    hook.allowed = True
    hook.warnings = ['deprecated "field"']
    await api.post(VWCS, config("warn", by_url(hook)))
    status, _, headers = await api.call("POST", CMS, cm("w"))
    assert status == 201
    assert headers.getall("Warning") == ['299 - "deprecated \\"field\\""']


async def test_failure_policy_when_the_webhook_is_down(api: Api) -> None:
    down = {"url": "https://127.0.0.1:1/validate"}
    await api.post(VWCS, config("ignored", down, failurePolicy="Ignore"))
    assert (await api.post(CMS, cm("ok")))[0] == 201
    await api.post(VWCS, config("strict", down, failurePolicy="Fail"))
    status, body = await api.post(CMS, cm("not-ok"))
    assert (status, body["reason"]) == (500, "InternalError")
    assert body["message"].startswith(
        'Internal error occurred: failed calling webhook "strict.example.com": failed to call webhook: '
        'Post "https://127.0.0.1:1/validate?timeout=10s"'
    )


async def test_a_slow_webhook_times_out(api: Api, hook: Hook) -> None:
    hook.allowed, hook.delay = True, 3.0
    await api.post(VWCS, config("slow", by_url(hook), timeoutSeconds=1))
    status, body = await api.post(CMS, cm("late"))
    assert status == 500 and body["message"].endswith("context deadline exceeded")


async def test_an_untrusted_certificate_is_a_call_failure(api: Api, hook: Hook) -> None:
    other_ca = base64.b64encode(trustme.CA().cert_pem.bytes()).decode()
    await api.post(
        VWCS, config("mitm", {"url": f"https://127.0.0.1:{hook.port}/validate", "caBundle": other_ca})
    )
    status, body = await api.post(CMS, cm("x"))
    assert status == 500 and "failed calling webhook" in body["message"]
    assert hook.reviews == []


async def test_service_references_resolve_through_the_service_map(
    api: Api, emulator: Emulator, hook: Hook
) -> None:
    service = {"namespace": "mcosup", "name": "hook", "path": "/validate", "port": 8443}
    await api.post(VWCS, config("svc", {"service": service, "caBundle": hook.ca_bundle}))
    status, body = await api.post(CMS, cm("x"))
    assert status == 500 and "service_map" in body["message"]
    emulator.service_map[("mcosup", "hook", 8443)] = f"127.0.0.1:{hook.port}"
    status, body = await api.post(CMS, cm("x"))
    assert (status, body["message"]) == (
        403,
        'admission webhook "svc.example.com" denied the request: no configmaps today',
    )


async def test_namespace_and_object_selectors(api: Api, hook: Hook) -> None:
    selector = {"matchLabels": {"policy": "strict"}}
    await api.post(VWCS, config("ns", by_url(hook), namespaceSelector=selector))
    await api.post("/api/v1/namespaces", {"metadata": {"name": "strict", "labels": {"policy": "strict"}}})
    assert (await api.post(CMS, cm("free")))[0] == 201
    assert (await api.post("/api/v1/namespaces/strict/configmaps", cm("x")))[0] == 403
    await api.delete(f"{VWCS}/ns")
    await api.post(VWCS, config("obj", by_url(hook), objectSelector={"matchLabels": {"guarded": "yes"}}))
    assert (await api.post(CMS, cm("plain")))[0] == 201
    assert (await api.post(CMS, {"metadata": {"name": "g", "labels": {"guarded": "yes"}}}))[0] == 403


async def test_kubectl_shows_the_denial(
    hook: Hook, emulator: Emulator, admin_kubeconfig: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "vwc.json"
    manifest.write_text(json.dumps(config("deny", by_url(hook))))

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [os.environ.get("MCOSUP_TEST_KUBECTL", "kubectl"), "--kubeconfig", str(admin_kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert (await asyncio.to_thread(kubectl, "apply", "-f", str(manifest))).returncode == 0
    cm_file = tmp_path / "cm.json"
    cm_file.write_text(json.dumps(cm("blocked")))
    result = await asyncio.to_thread(kubectl, "create", "-f", str(cm_file))
    assert result.returncode == 1
    assert 'admission webhook "deny.example.com" denied the request: no configmaps today' in result.stderr
    # The webhook gave no reason, so neither does the apiserver, and kubectl prints none.
    assert result.stderr.startswith('Error from server: error when creating "')
    # With the webhook gone and failurePolicy Ignore, the same create succeeds.
    ignore = config("deny", {"url": "https://127.0.0.1:1/validate"}, failurePolicy="Ignore")
    manifest.write_text(json.dumps(ignore))
    assert (await asyncio.to_thread(kubectl, "apply", "-f", str(manifest))).returncode == 0
    result = await asyncio.to_thread(kubectl, "create", "-f", str(cm_file))
    assert result.returncode == 0, result.stderr
    assert emulator.get_object("v1", "configmaps", "blocked", "default") is not None


async def test_subresource_rules_match_evictions_and_status_updates(api: Api, hook: Hook) -> None:
    eviction_rule = {
        "operations": ["CREATE"],
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "resources": ["pods/eviction"],
    }
    status_rule = {
        "operations": ["UPDATE"],
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "resources": ["nodes/status"],
    }
    vwc = config("sub", by_url(hook))
    vwc["webhooks"][0]["rules"] = [eviction_rule, status_rule]
    await api.post(VWCS, vwc)
    await api.post(
        "/api/v1/namespaces/default/pods",
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
    )
    await api.post("/api/v1/nodes", {"metadata": {"name": "n1"}})
    status, body = await api.post(
        "/api/v1/namespaces/default/pods/p/eviction",
        {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}},
    )
    assert (status, body["message"]) == (
        403,
        'admission webhook "sub.example.com" denied the request: no configmaps today',
    )
    assert (await api.get("/api/v1/namespaces/default/pods/p"))[0] == 200
    assert (await api.patch("/api/v1/nodes/n1", {"metadata": {"labels": {"a": "b"}}}))[0] == 200
    assert (await api.patch("/api/v1/nodes/n1/status", {"status": {"phase": "x"}}))[0] == 403
    evict, update = (r["request"] for r in hook.reviews)
    assert (evict["kind"], evict["resource"]["resource"], evict["subResource"], evict["operation"]) == (
        {"group": "policy", "version": "v1", "kind": "Eviction"},
        "pods",
        "eviction",
        "CREATE",
    )
    assert evict["object"]["kind"] == "Eviction" and evict["name"] == "p"
    assert (update["subResource"], update["kind"]["kind"], update["oldObject"]["metadata"]["name"]) == (
        "status",
        "Node",
        "n1",
    )


async def test_webhook_configurations_are_never_sent_to_webhooks(api: Api, hook: Hook) -> None:
    everything = {"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}
    vwc = config("all", by_url(hook))
    vwc["webhooks"][0]["rules"] = [everything]
    await api.post(VWCS, vwc)
    # The deny-all webhook would otherwise lock itself in: it can still be removed.
    assert (await api.delete(f"{VWCS}/all"))[0] == 200
    assert hook.reviews == []


async def test_webhook_configurations_are_validated(api: Api) -> None:
    bad = config("bad", {"url": "http://127.0.0.1:1/validate"}, timeoutSeconds=31, failurePolicy="Maybe")
    del bad["webhooks"][0]["sideEffects"]
    bad["webhooks"][0]["name"] = "short.name"
    status, body = await api.post(VWCS, bad)
    assert (status, body["reason"]) == (422, "Invalid")
    fields = {c["field"]: c["message"] for c in body["details"]["causes"]}
    assert fields == {
        "webhooks[0].name": 'Invalid value: "short.name": '
        "should be a domain with at least three segments separated by dots",
        "webhooks[0].sideEffects": "Required value: must specify one of None, NoneOnDryRun",
        "webhooks[0].failurePolicy": 'Unsupported value: "Maybe": supported values: "Fail", "Ignore"',
        "webhooks[0].timeoutSeconds": "Invalid value: 31: the timeout value must be between 1 and 30 seconds",
        "webhooks[0].clientConfig.url": 'Invalid value: "http://127.0.0.1:1/validate": '
        "'https' is the only allowed URL scheme",
    }


async def test_a_strategic_patch_merges_webhooks_by_name(api: Api, hook: Hook) -> None:
    vwc = config("two", by_url(hook))
    vwc["webhooks"].append({**vwc["webhooks"][0], "name": "second.example.com"})
    await api.post(VWCS, vwc)
    status, out = await api.patch(
        f"{VWCS}/two", {"webhooks": [{"name": "second.example.com", "failurePolicy": "Ignore"}]}, "strategic"
    )
    assert status == 200
    assert [(w["name"], w.get("failurePolicy"), w["sideEffects"]) for w in out["webhooks"]] == [
        ("two.example.com", "Fail", "None"),  # the v1 default
        ("second.example.com", "Ignore", "None"),
    ]
