"""Settings: frozen dataclasses built from an injected environment mapping.

Nothing here reads ``os.environ`` by itself: the composition root passes the mapping in, so tests
build settings from plain dicts. Every error names the variable and says what it accepts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TypeVar

from mcosup.model import names


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


# The processes' own settings (kept here so every knob of mcosup is in one module).


@dataclasses.dataclass(frozen=True)
class DrainSettings:
    #: Seconds a drain may take before the pool reports ``DrainStuck`` (contract: ``drainTimeout``,
    #: default 1h like the MCO's drain alert). The drain keeps retrying after that.
    timeout: float = 3600.0
    #: Seconds before retrying an eviction a PodDisruptionBudget refused; doubles up to ``retry_cap``.
    retry_base: float = 1.0
    #: Longest wait between eviction retries: how soon a relaxed budget is noticed.
    retry_cap: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DrainSettings:
        return cls(
            timeout=env_float(env, "MCOSUP_DRAIN_TIMEOUT", cls.timeout, minimum=0),
            retry_base=env_float(env, "MCOSUP_DRAIN_RETRY_BASE", cls.retry_base, minimum=0.01),
            retry_cap=env_float(env, "MCOSUP_DRAIN_RETRY_CAP", cls.retry_cap, minimum=0.01),
        )


@dataclasses.dataclass(frozen=True)
class RolloutSettings:
    drain: DrainSettings = dataclasses.field(default_factory=DrainSettings)
    #: Seconds between reconciles of a pool that is not fully updated even without events: a safety
    #: net for missed events, not the way progress is noticed.
    resync: float = 60.0
    #: Seconds before retrying a pool after a node write hit a 409 (the cache is about to catch up).
    conflict_retry: float = 0.2
    #: Seconds after which a write our cache never showed stops counting as in flight.
    expectation_timeout: float = 300.0
    #: Least seconds between two pool status writes that only update counts and messages (a condition
    #: changing status is written at once): a wave of nodes finishing makes one write, not twenty.
    status_interval: float = 0.25
    #: Seconds of a maintenance window a node's update needs to reach its reboot (cordon and drain
    #: come first): no update starts later than this before its window ends (contract 12.4).
    window_margin: float = 600.0
    #: Seconds a node asked to download the image ahead of its turn may take before its turn starts
    #: without it (contract 12.1): generous, as a multi-GB image over a slow link takes minutes, yet
    #: bounded, so a daemon that cannot stage never holds a rollout.
    staging_timeout: float = 900.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RolloutSettings:
        return cls(
            drain=DrainSettings.from_env(env),
            window_margin=env_float(env, "MCOSUP_WINDOW_MARGIN", cls.window_margin, minimum=0),
            staging_timeout=env_float(env, "MCOSUP_STAGING_TIMEOUT", cls.staging_timeout, minimum=0),
        )


@dataclasses.dataclass(frozen=True)
class LeaseSettings:
    name: str = "mcosup-supervisor"
    #: Seconds a standby waits without seeing the Lease renewed before taking it over.
    lease_duration: float = 15.0
    #: Seconds a leader keeps trying to renew before giving up leadership (< lease_duration).
    renew_deadline: float = 10.0
    #: Seconds between attempts to acquire or renew.
    retry_period: float = 2.0


@dataclasses.dataclass(frozen=True)
class AgentSettings:
    #: Seconds between passes when nothing changes: host drift and missed events are noticed this late.
    resync: float = 300.0
    #: First retry delay after a failure, in seconds; doubles per consecutive failure.
    backoff_initial: float = 1.0
    #: Cap of the retry delay in seconds: a fixed cause (a pushed image, a fixed path) is picked up
    #: within this long even without a watch event.
    backoff_max: float = 60.0


@dataclasses.dataclass(frozen=True)
class PodOptions:
    """How build Pods run (settings of the builder process)."""

    namespace: str = names.DEFAULT_NAMESPACE
    #: The buildah image. Any image with buildah, sh, cat and tar on PATH.
    buildah_image: str = "quay.io/buildah/stable:v1.37"
    #: Verify registry TLS on pull and push; off only for a plain-HTTP test registry.
    tls_verify: bool = True
    cpu_request: str = "500m"
    memory_request: str = "1Gi"
    service_account: str = names.BUILDER_SA


@dataclasses.dataclass(frozen=True)
class BuilderSettings:
    """Settings of the builder process (``mcosup builder``; see its module for the variables)."""

    namespace: str = names.DEFAULT_NAMESPACE
    pod: PodOptions = dataclasses.field(default_factory=PodOptions)
    #: Retries of a failed build per identity (contract: 3), after the first attempt: the build Job's
    #: backoffLimit (the Job controller waits between them: 10 s, doubling).
    max_retries: int = 3
    #: Lines of the build log quoted in the BuildFailed message.
    log_tail_lines: int = 15

    @classmethod
    def from_env(cls, env: Mapping[str, str], namespace: str | None = None) -> BuilderSettings:
        """The builder's settings: MCOSUP_BUILDAH_IMAGE, MCOSUP_BUILD_TLS_VERIFY, MCOSUP_BUILD_CPU_REQUEST,
        MCOSUP_BUILD_MEMORY_REQUEST and MCOSUP_BUILD_RETRIES."""
        ns = namespace_from_env(env, namespace)
        defaults = PodOptions()
        verify = env_str(env, "MCOSUP_BUILD_TLS_VERIFY", "true").lower()
        if verify not in ("true", "false"):
            raise SettingsError(f"MCOSUP_BUILD_TLS_VERIFY={verify!r} must be true or false")
        pod = PodOptions(
            namespace=ns,
            buildah_image=env_str(env, "MCOSUP_BUILDAH_IMAGE", defaults.buildah_image),
            tls_verify=verify == "true",
            cpu_request=env_str(env, "MCOSUP_BUILD_CPU_REQUEST", defaults.cpu_request),
            memory_request=env_str(env, "MCOSUP_BUILD_MEMORY_REQUEST", defaults.memory_request),
        )
        return cls(
            namespace=ns,
            pod=pod,
            max_retries=env_int(env, "MCOSUP_BUILD_RETRIES", cls.max_retries),
        )
