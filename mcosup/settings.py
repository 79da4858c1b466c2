"""Settings: frozen dataclasses built from an injected environment mapping.

Nothing here reads ``os.environ`` by itself: the composition root passes the mapping in, so tests
build settings from plain dicts. Every error names the variable and says what it accepts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TypeVar

from webhooks import names


class SettingsError(ValueError):
    """A setting has a value mcosup cannot use; the message names the variable and the fix."""


T = TypeVar("T")


def env_str(env: Mapping[str, str], var: str, default: str) -> str:
    value = env.get(var, "").strip()
    return value or default


def env_float(env: Mapping[str, str], var: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{var}={raw!r} is not a number; set it to a number such as {default}") from None
    if value < minimum:
        raise SettingsError(f"{var}={raw!r} must be at least {minimum}")
    return value


def env_int(env: Mapping[str, str], var: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{var}={raw!r} is not a whole number; set it to one such as {default}") from None
    if value < minimum:
        raise SettingsError(f"{var}={raw!r} must be at least {minimum}")
    return value


@dataclasses.dataclass(frozen=True)
class KubeSettings:
    """How to reach the API server."""

    #: Path of a kubeconfig; empty means in-cluster config (service account token + CA).
    kubeconfig: str = ""
    #: Seconds a single non-watch request may take before it is abandoned and retried.
    request_timeout: float = 30.0
    #: Server-side watch timeout in seconds; the client reconnects after it. Short enough that a dead
    #: connection is noticed quickly, long enough not to hammer the server.
    watch_timeout: int = 300
    #: Field manager recorded on every write, so `kubectl` shows who changed what.
    field_manager: str = "mcosup"

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, kubeconfig: str | None = None) -> KubeSettings:
        return cls(
            kubeconfig=kubeconfig if kubeconfig is not None else env.get("KUBECONFIG", ""),
            request_timeout=env_float(env, "MCOSUP_REQUEST_TIMEOUT", cls.request_timeout, minimum=1),
            watch_timeout=env_int(env, "MCOSUP_WATCH_TIMEOUT", cls.watch_timeout, minimum=1),
        )


def namespace_from_env(env: Mapping[str, str], override: str | None = None) -> str:
    """The namespace mcosup lives in (contract section 1: MCOSUP_NAMESPACE)."""
    return override or env_str(env, "MCOSUP_NAMESPACE", names.DEFAULT_NAMESPACE)


@dataclasses.dataclass(frozen=True)
class SupervisorSettings:
    namespace: str = names.DEFAULT_NAMESPACE
    #: Address of the plain-HTTP port (probes, metrics).
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    #: Image of the builder pod: the supervisor's own image (one image for all three processes).
    image: str = "quay.io/mcosup/mcosup:latest"
    #: This replica's name in the leader Lease (the pod name in a cluster).
    identity: str = "mcosup"
    #: The supervisor's Deployment, owner of the builder pod; empty outside a cluster.
    deployment: str = ""
    #: Seconds before recreating a builder pod after its first failure; doubles per quick failure.
    builder_backoff: float = 5.0
    #: HTTPS port of the admission webhook (0 picks a free one).
    webhook_port: int = 9443
    #: Webhook TLS: "self-managed" (the supervisor keeps a CA and serving cert in a Secret and injects the
    #: CA into the ValidatingWebhookConfiguration), "files" (tls.crt/tls.key in webhook_cert_dir, e.g. from
    #: cert-manager or the service CA; reloaded when they change), or "off" (no webhook served).
    webhook_tls: str = "self-managed"
    #: Directory of tls.crt/tls.key: read in "files" mode, written in "self-managed" mode.
    webhook_cert_dir: str = "/tmp/mcosup-webhook"
    #: The Service in front of the webhook (its DNS names go into the self-managed certificate).
    webhook_service: str = "machine-config-supervisor"
    #: More names (host names or IP addresses) for the self-managed serving certificate, for an API server
    #: that reaches the webhook by ``url`` rather than through the Service (MCOSUP_WEBHOOK_EXTRA_NAMES,
    #: comma-separated).
    webhook_extra_names: tuple[str, ...] = ()
    #: Build settings handed on to the builder pod's environment (MCOSUP_BUILD_*, MCOSUP_BUILDAH_IMAGE),
    #: so the builder is configured where the supervisor is.
    builder_env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> SupervisorSettings:
        values: dict[str, object] = {
            "namespace": namespace_from_env(env),
            "http_host": env_str(env, "MCOSUP_HTTP_HOST", cls.http_host),
            "http_port": env_int(env, "MCOSUP_HTTP_PORT", cls.http_port),
            "image": env_str(env, "MCOSUP_IMAGE", cls.image),
            "identity": env_str(env, "POD_NAME", env_str(env, "HOSTNAME", cls.identity)),
            "deployment": env_str(env, "MCOSUP_DEPLOYMENT", ""),
            "builder_backoff": env_float(env, "MCOSUP_BUILDER_BACKOFF", cls.builder_backoff, minimum=0.01),
            "webhook_port": env_int(env, "MCOSUP_WEBHOOK_PORT", cls.webhook_port),
            "webhook_tls": env_str(env, "MCOSUP_WEBHOOK_TLS", cls.webhook_tls),
            "webhook_cert_dir": env_str(env, "MCOSUP_WEBHOOK_CERT_DIR", cls.webhook_cert_dir),
            "webhook_service": env_str(env, "MCOSUP_WEBHOOK_SERVICE", cls.webhook_service),
            "webhook_extra_names": tuple(
                n.strip() for n in env_str(env, "MCOSUP_WEBHOOK_EXTRA_NAMES", "").split(",") if n.strip()
            ),
            "builder_env": tuple(
                sorted(
                    (k, v)
                    for k, v in env.items()
                    if k.startswith("MCOSUP_BUILD_") or k == "MCOSUP_BUILDAH_IMAGE"
                )
            ),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values["webhook_tls"] not in WEBHOOK_TLS_MODES:
            raise SettingsError(
                f"MCOSUP_WEBHOOK_TLS={values['webhook_tls']!r} is not one of {', '.join(WEBHOOK_TLS_MODES)}"
            )
        return cls(**values)  # type: ignore[arg-type]


WEBHOOK_TLS_MODES = ("self-managed", "files", "off")


def _is_build_setting(var: str) -> bool:
    return var.startswith("MCOSUP_BUILD_") or var == "MCOSUP_BUILDAH_IMAGE"
