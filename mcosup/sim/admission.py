"""Validating admission: match `ValidatingWebhookConfiguration` webhooks and call them over TLS.

Matching (`rule_matches`, `webhook_matches`) is pure and follows the apiserver's predicates: rule
operations/apiGroups/apiVersions/resources (`*`, `*/*`, `pods/*`, `*/status`, `nodes/status`) and
scope, `namespaceSelector` (ignored for cluster-scoped objects other than Namespaces; a Namespace is
matched against its own labels) and `objectSelector` (the new or the old object's labels).
`matchConditions` (CEL) are not evaluated: a webhook with them is treated as matching.

Calling (`call_webhooks`) posts an `admission.k8s.io/v1` AdmissionReview to each matching webhook in
parallel, with `?timeout=<N>s` appended to the URL as the apiserver does, verifying the server
certificate against `caBundle` (and the `<service>.<namespace>.svc` name for service references,
which resolve through the emulator's service map). A denial becomes the apiserver's error
(`admission webhook "<name>" denied the request: <message>`, the webhook's code or 403); a call that
fails becomes 500 `failed calling webhook` under `failurePolicy: Fail` and is skipped under `Ignore`.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from mcosup.sim import errors
from mcosup.sim.selectors import label_selector_from_dict

ServiceMap = Mapping[tuple[str, str, int], str]


@dataclass(frozen=True)
class UserInfo:
    username: str
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    uid: str = ""

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.username, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out


@dataclass
class Attributes:
    operation: str  # CREATE, UPDATE, DELETE
    group: str
    version: str
    resource: str
    subresource: str
    kind: dict[str, str]  # {"group", "version", "kind"} of the object sent
    name: str
    namespace: str
    obj: dict[str, Any] | None
    old: dict[str, Any] | None
    dry_run: bool
    options: dict[str, Any]
    user: UserInfo


def _in(values: Any, item: str) -> bool:
    return isinstance(values, list) and ("*" in values or item in values)


def rule_matches(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    if not _in(rule.get("operations"), attrs.operation):
        return False
    if not _in(rule.get("apiGroups"), attrs.group) or not _in(rule.get("apiVersions"), attrs.version):
        return False
    scope = rule.get("scope") or "*"
    if scope == "Cluster" and attrs.namespace:
        return False
    if scope == "Namespaced" and not attrs.namespace:
        return False
    for res in rule.get("resources") or []:
        name, _, sub = str(res).partition("/")
        if (name == "*" or name == attrs.resource) and (sub == "*" or sub == attrs.subresource):
            return True
    return False


def webhook_matches(
    webhook: Mapping[str, Any], attrs: Attributes, namespace_labels: Mapping[str, str] | None
) -> bool:
    if not any(rule_matches(rule, attrs) for rule in webhook.get("rules") or []):
        return False
    ns_selector = label_selector_from_dict(webhook.get("namespaceSelector"))
    if not ns_selector.empty:
        if attrs.group == "" and attrs.resource == "namespaces":
            target = attrs.obj if attrs.obj is not None else attrs.old
            labels = ((target or {}).get("metadata") or {}).get("labels") or {}
            if not ns_selector.matches(labels):
                return False
        elif attrs.namespace and not ns_selector.matches(namespace_labels or {}):
            return False
    obj_selector = label_selector_from_dict(webhook.get("objectSelector"))
    if not obj_selector.empty:
        candidates = [o for o in (attrs.obj, attrs.old) if o is not None]
        if not any(obj_selector.matches((o.get("metadata") or {}).get("labels") or {}) for o in candidates):
            return False
    return True


def review_request(attrs: Attributes) -> dict[str, Any]:
    resource = {"group": attrs.group, "version": attrs.version, "resource": attrs.resource}
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": attrs.kind,
        "resource": resource,
        "requestKind": attrs.kind,
        "requestResource": resource,
        "name": attrs.name,
        "operation": attrs.operation,
        "userInfo": attrs.user.wire(),
        "object": attrs.obj,
        "oldObject": attrs.old,
        "dryRun": attrs.dry_run,
        "options": attrs.options,
    }
    if attrs.subresource:
        request["subResource"] = attrs.subresource
        request["requestSubResource"] = attrs.subresource
    if attrs.namespace:
        request["namespace"] = attrs.namespace
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


class WebhookCallError(Exception):
    pass


@dataclass
class Caller:
    """Holds the HTTP session and TLS contexts used to call webhooks."""

    service_map: ServiceMap
    session: aiohttp.ClientSession | None = None
    _contexts: dict[str, ssl.SSLContext] = field(default_factory=dict)

    def _context(self, ca_bundle: str | None) -> ssl.SSLContext:
        key = ca_bundle or ""
        ctx = self._contexts.get(key)
        if ctx is None:
            if ca_bundle:
                try:
                    pem = base64.b64decode(ca_bundle).decode()
                except ValueError as exc:
                    raise WebhookCallError(f"invalid caBundle: {exc}") from None
                ctx = ssl.create_default_context(cadata=pem)
            else:
                ctx = ssl.create_default_context()
            self._contexts[key] = ctx
        return ctx

    def _endpoint(self, config: Mapping[str, Any], timeout: int) -> tuple[str, str | None]:
        if config.get("url"):
            url = str(config["url"])
            host = None
        elif config.get("service"):
            svc = config["service"]
            ns, name, port = (
                str(svc.get("namespace", "")),
                str(svc.get("name", "")),
                int(svc.get("port") or 443),
            )
            address = self.service_map.get((ns, name, port))
            if address is None:
                raise WebhookCallError(
                    f"service {ns}/{name}:{port} is not in the emulator's service_map; "
                    f"map ({ns!r}, {name!r}, {port}) to a local host:port"
                )
            url = f"https://{address}{svc.get('path') or '/'}"
            host = f"{name}.{ns}.svc"
        else:
            raise WebhookCallError("the webhook clientConfig has neither url nor service")
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}timeout={timeout}s", host

    async def call(self, webhook: Mapping[str, Any], review: dict[str, Any]) -> dict[str, Any]:
        assert self.session is not None, "the admission caller is not started"
        timeout = int(webhook.get("timeoutSeconds") or 10)
        config = webhook.get("clientConfig") or {}
        url, host = self._endpoint(config, timeout)
        ctx = self._context(config.get("caBundle"))
        try:
            async with self.session.post(
                url,
                data=orjson.dumps(review),
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                ssl=ctx,
                server_hostname=host,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                payload = await resp.read()
                if resp.status != 200:
                    raise WebhookCallError(
                        f'failed to call webhook: Post "{url}": '
                        f"the server responded with status {resp.status}"
                    )
        except TimeoutError:
            raise WebhookCallError(
                f'failed to call webhook: Post "{url}": context deadline exceeded'
            ) from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError):
                # Go's net.Dial wording, which is what a real API server reports.
                why = f"dial tcp {exc.host}:{exc.port}: connect: connection refused"
            else:
                why = str(exc)
            raise WebhookCallError(f'failed to call webhook: Post "{url}": {why}') from None
        except aiohttp.ClientError as exc:
            raise WebhookCallError(f'failed to call webhook: Post "{url}": {exc}') from None
        try:
            answer = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise WebhookCallError("received invalid webhook response: not JSON") from None
        response = answer.get("response") if isinstance(answer, dict) else None
        if not isinstance(response, dict):
            raise WebhookCallError("received invalid webhook response: no response field")
        if response.get("uid") != review["request"]["uid"]:
            raise WebhookCallError(
                f"expected response.uid={review['request']['uid']!r}, got {response.get('uid')!r}"
            )
        return response


def denial(webhook_name: str, result: Mapping[str, Any] | None) -> errors.ApiStatusError:
    """The error the apiserver returns for a webhook that denied the request."""
    result = dict(result or {})
    code = int(result.get("code") or 0)
    if code < 400:
        code = 403
    denied_by = f'admission webhook "{webhook_name}" denied the request'
    if result.get("message"):
        message = f"{denied_by}: {result['message']}"
    elif result.get("reason"):
        message = f"{denied_by}: {result['reason']}"
    else:
        message = f"{denied_by} without explanation"
    return errors.ApiStatusError(code, str(result.get("reason") or ""), message, result.get("details"))


async def call_webhooks(
    caller: Caller,
    configs: list[dict[str, Any]],
    attrs: Attributes,
    namespace_labels: Mapping[str, str] | None,
) -> list[str]:
    """Run every matching webhook; returns warnings, raises the apiserver's error on denial/failure."""
    matching = [
        w
        for config in configs
        for w in config.get("webhooks") or []
        if webhook_matches(w, attrs, namespace_labels)
    ]
    if not matching:
        return []
    review = review_request(attrs)

    async def one(webhook: Mapping[str, Any]) -> dict[str, Any] | errors.ApiStatusError | None:
        name = str(webhook.get("name", ""))
        try:
            return await caller.call(webhook, review)
        except WebhookCallError as exc:
            if (webhook.get("failurePolicy") or "Fail") == "Ignore":
                return None
            return errors.internal(f'failed calling webhook "{name}": {exc}')

    results = await asyncio.gather(*(one(w) for w in matching))
    warnings: list[str] = []
    failure: errors.ApiStatusError | None = None
    for webhook, result in zip(matching, results, strict=True):
        if isinstance(result, errors.ApiStatusError):
            failure = failure or result
            continue
        if result is None:
            continue
        warnings.extend(str(w) for w in result.get("warnings") or [])
        if not result.get("allowed"):
            failure = failure or denial(str(webhook.get("name", "")), result.get("status"))
    if failure is not None:
        failure.warnings = warnings
        raise failure
    return warnings
