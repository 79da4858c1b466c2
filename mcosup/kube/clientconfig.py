"""Where the API server is and how to prove who we are: kubeconfig files and in-cluster config.

:func:`load` turns :class:`~mcosup.runtime.settings.KubeSettings` into a :class:`ClientConfig`: the server
URL, an :class:`ssl.SSLContext` and an async source of the ``Authorization`` header. It reads kubeconfigs
as kubectl does:

- ``KUBECONFIG`` may list several files (``:``-separated): they are merged, the first file to define a
  cluster, user or context (by name) or ``current-context`` wins, and listed files that do not exist
  are skipped (a single named file must exist).
- cluster: ``server``, ``certificate-authority(-data)``, ``insecure-skip-tls-verify``,
  ``tls-server-name``; user: ``token``, ``tokenFile``, ``client-certificate(-data)``,
  ``client-key(-data)``, ``username``/``password``. ``*-data`` wins over the file; ``token`` over
  ``tokenFile``. Relative paths resolve against the directory of the file that holds the entry.
- a ``tokenFile`` (and the in-cluster service-account token) is re-read every minute, as client-go
  does: bound service-account tokens rotate.
- a user with ``exec`` or ``auth-provider`` is handed to kubernetes_asyncio's loader (imported only
  then), which runs the plugin protocols; everything else never imports that library, whose package
  import alone costs a short-lived process a fifth of a second.

Without a kubeconfig, the in-cluster config: ``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT``
and the service account's ``token`` and ``ca.crt``.

Every problem is an :class:`~mcosup.kube.errors.ApiError` with status 0 and reason ``BadKubeconfig``
(or ``NoConfig`` when there is no configuration at all) whose message names the file, the field and
the fix.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import os
import ssl
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from mcosup.kube import errors
from mcosup.runtime.settings import KubeSettings

log = logging.getLogger(__name__)

#: Where Kubernetes mounts a Pod's service-account credentials.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: Seconds between re-reads of a token file (client-go's cached file token source re-reads every minute).
TOKEN_REREAD_SECONDS = 60.0

#: Returns the ``Authorization`` header value for the next request, or None for anonymous requests.
Authorization = Callable[[], Awaitable[str | None]]


@dataclasses.dataclass(frozen=True)
class TLS:
    """TLS material as the configuration gives it: file paths resolved, ``*-data`` fields decoded."""

    ca_file: str | None = None
    ca_data: bytes | None = None
    cert_file: str | None = None
    cert_data: bytes | None = None
    key_file: str | None = None
    key_data: bytes | None = dataclasses.field(default=None, repr=False)
    #: ``insecure-skip-tls-verify``: no server certificate check at all.
    insecure: bool = False
    #: ``tls-server-name``: the name the server certificate is checked against (and sent as SNI).
    server_name: str | None = None


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """What a client needs to reach the API server."""

    #: Base URL without a trailing slash, e.g. ``https://10.0.0.1:6443``.
    server: str
    #: Where this came from, for messages: ``kubeconfig /path (context x)`` or ``in-cluster config``.
    origin: str
    authorization: Authorization
    #: None for a plain ``http://`` server.
    tls: TLS | None
    ssl_context: ssl.SSLContext | None

    @property
    def server_hostname(self) -> str | None:
        return self.tls.server_name if self.tls else None


async def load(settings: KubeSettings, env: Mapping[str, str] | None = None) -> ClientConfig:
    """The configuration ``settings`` name: its kubeconfig, else the in-cluster config."""
    if settings.kubeconfig:
        return await from_kubeconfig(settings.kubeconfig)
    return in_cluster(os.environ if env is None else env)


# Kubeconfig ------------------------------------------------------------------------------------------


def _bad(message: str) -> errors.ApiError:
    return errors.ApiError(0, "BadKubeconfig", message)


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One named cluster, user or context and the file that defined it."""

    name: str
    body: dict[str, Any]
    file: Path

    def where(self, kind: str) -> str:
        return f"kubeconfig {self.file}: {kind} {self.name!r}"

    def string(self, kind: str, key: str) -> str | None:
        """The field as a non-empty string, None when absent or empty."""
        value = self.body.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise _bad(f"{self.where(kind)} has {key} of type {type(value).__name__}, not a string; quote it")
        return value

    def path(self, kind: str, key: str) -> str | None:
        """A file field, resolved against the directory of the file that holds it (as kubectl does)."""
        value = self.string(kind, key)
        if value is None:
            return None
        return os.path.normpath(os.path.join(self.file.parent, value))

    def data(self, kind: str, key: str) -> bytes | None:
        """A base64 ``*-data`` field, decoded."""
        value = self.string(kind, key)
        if value is None:
            return None
        try:
            return base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            raise _bad(
                f"{self.where(kind)} has {key} that is not valid base64; it must hold the base64 of the "
                "PEM file (base64 -w0 FILE)"
            ) from None


@dataclasses.dataclass
class _Merged:
    files: list[Path]
    current_context: str | None = None
    sections: dict[str, dict[str, _Entry]] = dataclasses.field(
        default_factory=lambda: {"clusters": {}, "users": {}, "contexts": {}}
    )

    @property
    def describe(self) -> str:
        return str(self.files[0]) if len(self.files) == 1 else ":".join(str(f) for f in self.files)


_SINGULAR = {"clusters": "cluster", "users": "user", "contexts": "context"}


def _read_kubeconfigs(paths: str) -> _Merged:
    listed = [p for p in paths.split(os.pathsep) if p.strip()]
    merged = _Merged(files=[])
    for raw in listed:
        path = Path(raw).expanduser()
        if len(listed) > 1 and not path.exists():
            continue  # kubectl skips files of a KUBECONFIG list that do not exist
        doc = _read_one(path)
        merged.files.append(path)
        context = doc.get("current-context")
        if merged.current_context is None and context:
            if not isinstance(context, str):
                raise _bad(f"kubeconfig {path}: current-context must be a context name (a string)")
            merged.current_context = context
        for section, singular in _SINGULAR.items():
            seen: set[str] = set()
            for entry in _entries(doc, section, singular, path):
                if entry.name in seen:
                    raise _bad(
                        f"kubeconfig {path}: {section} has two entries named {entry.name!r}; rename or "
                        "delete one"
                    )
                seen.add(entry.name)
                merged.sections[section].setdefault(entry.name, entry)  # the first file wins
    if not merged.files:
        raise _bad(
            f"none of the kubeconfig files {paths!r} exists; fix --kubeconfig or $KUBECONFIG "
            "(a ':'-separated list of files)"
        )
    return merged


def _read_one(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _bad(f"kubeconfig {path} does not exist; fix --kubeconfig or $KUBECONFIG") from None
    except IsADirectoryError:
        raise _bad(f"kubeconfig {path} is a directory, not a file; fix --kubeconfig or $KUBECONFIG") from None
    except PermissionError:
        raise _bad(
            f"kubeconfig {path} cannot be read (permission denied); make it readable by this user "
            f"(uid {os.getuid()})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(f"kubeconfig {path} cannot be read: {exc}; point --kubeconfig at a YAML file") from None
    import yaml  # here, not at the top: in-cluster processes (the builder pod) start faster without it

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise _bad(
            f"kubeconfig {path} is not valid YAML{at}: {problem}; fix the file (kubectl config view "
            "shows what kubectl makes of it)"
        ) from None
    if doc is None:
        return {}  # an empty file is an empty configuration, as for kubectl
    if not isinstance(doc, dict):
        raise _bad(
            f"kubeconfig {path} holds a YAML {type(doc).__name__}, not a mapping with clusters, users "
            "and contexts; is it the right file?"
        )
    return doc


def _entries(doc: Mapping[str, Any], section: str, singular: str, path: Path) -> list[_Entry]:
    items = doc.get(section)
    if items is None:
        return []
    if not isinstance(items, list):
        raise _bad(f"kubeconfig {path}: {section} must be a list of entries with name and {singular}")
    result = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise _bad(f"kubeconfig {path}: {section}[{i}] has no name; give every entry a name")
        body = item.get(singular)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise _bad(
                f"kubeconfig {path}: {singular} {item['name']!r} must be a mapping under the key {singular!r}"
            )
        result.append(_Entry(item["name"], body, path))
    return result


async def from_kubeconfig(paths: str, *, reread_seconds: float = TOKEN_REREAD_SECONDS) -> ClientConfig:
    """The configuration of the current context of the kubeconfig file(s) ``paths`` (``:``-separated)."""
    merged = _read_kubeconfigs(paths)
    contexts = merged.sections["contexts"]
    if not merged.current_context:
        raise _bad(
            f"kubeconfig {merged.describe} sets no current-context; choose one with "
            f"`kubectl config use-context NAME` (contexts: {_names(contexts)})"
        )
    context = contexts.get(merged.current_context)
    if context is None:
        raise _bad(
            f"kubeconfig {merged.describe}: current-context {merged.current_context!r} is not among its "
            f"contexts ({_names(contexts)}); fix current-context or add that context"
        )
    cluster_name = context.string("context", "cluster")
    if cluster_name is None:
        raise _bad(f"{context.where('context')} names no cluster; add cluster: NAME to the context")
    cluster = merged.sections["clusters"].get(cluster_name)
    if cluster is None:
        raise _bad(
            f"{context.where('context')} names cluster {cluster_name!r}, which is not among the clusters "
            f"({_names(merged.sections['clusters'])}); fix the context or add the cluster"
        )
    user_name = context.string("context", "user")
    user: _Entry | None = None
    if user_name is not None:
        user = merged.sections["users"].get(user_name)
        if user is None:
            raise _bad(
                f"{context.where('context')} names user {user_name!r}, which is not among the users "
                f"({_names(merged.sections['users'])}); fix the context or add the user"
            )
    origin = f"kubeconfig {merged.describe} (context {context.name!r})"
    server = _server(cluster)
    https = server.lower().startswith("https://")
    if user is not None and ("exec" in user.body or "auth-provider" in user.body):
        if https:
            _cluster_tls(cluster, None)  # the same checks of the cluster's fields as for every user
        return await _delegate(paths, context.name, origin)
    tls = _cluster_tls(cluster, user) if https else None
    return ClientConfig(
        server=server,
        origin=origin,
        authorization=_user_authorization(user, reread_seconds),
        tls=tls,
        ssl_context=_ssl_context(tls, origin) if tls else None,
    )


def _names(section: Mapping[str, _Entry]) -> str:
    return ", ".join(repr(name) for name in section) or "none"


def _server(cluster: _Entry) -> str:
    server = cluster.string("cluster", "server")
    if server is None:
        raise _bad(f"{cluster.where('cluster')} has no server; add server: https://HOST:PORT")
    parsed = urllib.parse.urlsplit(server)
    if parsed.scheme not in ("https", "http") or not parsed.netloc:
        raise _bad(
            f"{cluster.where('cluster')} has server {server!r}, which is not an https:// (or http://) URL "
            "with a host; write it as https://HOST:PORT"
        )
    return server.rstrip("/")


def _cluster_tls(cluster: _Entry, user: _Entry | None) -> TLS:
    insecure = cluster.body.get("insecure-skip-tls-verify", False)
    if insecure is None:
        insecure = False
    if not isinstance(insecure, bool):
        raise _bad(f"{cluster.where('cluster')}: insecure-skip-tls-verify must be true or false")
    ca_data = cluster.data("cluster", "certificate-authority-data")
    ca_file = None if ca_data else cluster.path("cluster", "certificate-authority")
    if insecure and (ca_data or ca_file):
        raise _bad(
            f"{cluster.where('cluster')} has both insecure-skip-tls-verify and a certificate authority "
            "(kubectl refuses this too); remove one of them"
        )
    tls = TLS(
        ca_file=ca_file,
        ca_data=ca_data,
        insecure=insecure,
        server_name=cluster.string("cluster", "tls-server-name"),
    )
    if user is None:
        return tls
    cert_data = user.data("user", "client-certificate-data")
    cert_file = None if cert_data else user.path("user", "client-certificate")
    key_data = user.data("user", "client-key-data")
    key_file = None if key_data else user.path("user", "client-key")
    if (cert_data or cert_file) and not (key_data or key_file):
        raise _bad(
            f"{user.where('user')} has client-certificate but no client-key; add client-key or "
            "client-key-data"
        )
    if (key_data or key_file) and not (cert_data or cert_file):
        raise _bad(
            f"{user.where('user')} has client-key but no client-certificate; add client-certificate or "
            "client-certificate-data"
        )
    return dataclasses.replace(
        tls, cert_file=cert_file, cert_data=cert_data, key_file=key_file, key_data=key_data
    )


def _user_authorization(user: _Entry | None, reread_seconds: float) -> Authorization:
    if user is None:
        return StaticAuthorization(None)
    token = user.string("user", "token")
    token_file = None if token else user.path("user", "tokenFile")
    username = user.string("user", "username")
    password = user.string("user", "password")
    if (username is None) != (password is None):
        have, missing = ("username", "password") if password is None else ("password", "username")
        raise _bad(f"{user.where('user')} has {have} but no {missing}; add {missing} or remove {have}")
    if username is not None and (token or token_file):
        raise _bad(
            f"{user.where('user')} has both a token and username/password (kubectl refuses this too); "
            "keep one of them"
        )
    if token:
        return StaticAuthorization(f"Bearer {token.strip()}")
    if token_file:
        return FileToken(token_file, field=f"{user.where('user')} tokenFile", reread_seconds=reread_seconds)
    if username is not None and password is not None:
        basic = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        return StaticAuthorization(f"Basic {basic}")
    return StaticAuthorization(None)


async def _delegate(paths: str, context: str, origin: str) -> ClientConfig:
    """Users with ``exec`` or ``auth-provider``: kubernetes_asyncio runs the plugin protocols."""
    from kubernetes_asyncio import config as kconfig
    from kubernetes_asyncio.client import Configuration

    configuration = Configuration()
    try:
        await kconfig.load_kube_config(config_file=paths, context=context, client_configuration=configuration)
    except Exception as exc:  # the loader raises whatever a plugin or malformed entry trips
        raise _bad(
            f"cannot use {origin}: {type(exc).__name__}: {exc}; check the user's exec or auth-provider "
            "section (kubectl --kubeconfig ... get --raw /version runs the same plugin)"
        ) from exc
    host = str(configuration.host).rstrip("/")
    tls = None
    if host.lower().startswith("https://"):
        tls = TLS(
            ca_file=configuration.ssl_ca_cert,
            cert_file=configuration.cert_file,
            key_file=configuration.key_file,
            insecure=not configuration.verify_ssl,
            server_name=configuration.tls_server_name,
        )

    async def authorization() -> str | None:
        auth = await configuration.auth_settings()
        bearer = auth.get("BearerToken")
        if bearer and bearer.get("value"):
            return str(bearer["value"])
        return None

    return ClientConfig(
        server=host,
        origin=origin,
        authorization=authorization,
        tls=tls,
        ssl_context=_ssl_context(tls, origin) if tls else None,
    )


# In-cluster ------------------------------------------------------------------------------------------


def in_cluster(
    env: Mapping[str, str],
    directory: Path = SERVICE_ACCOUNT_DIR,
    *,
    reread_seconds: float = TOKEN_REREAD_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> ClientConfig:
    """The Pod's own configuration: the ``kubernetes`` Service from the environment, its service account."""
    host = env.get("KUBERNETES_SERVICE_HOST", "").strip()
    port = env.get("KUBERNETES_SERVICE_PORT", "").strip()
    if not host or not port:
        raise errors.ApiError(
            0,
            "NoConfig",
            "no kubeconfig given (--kubeconfig or KUBECONFIG) and not in a cluster "
            "(KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set); pass --kubeconfig",
        )
    if ":" in host or "%" in host:
        host = f"[{host}]"  # an IPv6 address, as Go's net.JoinHostPort writes it
    origin = f"in-cluster config ({directory})"
    ca_file = directory / "ca.crt"
    try:
        ca = ca_file.read_bytes()
    except OSError as exc:
        raise _no_config(f"cannot read {ca_file} ({_describe(exc)})") from None
    if not ca.strip():
        raise _no_config(f"{ca_file} is empty")
    authorization = FileToken(
        str(directory / "token"),
        field="in-cluster token",
        reason="NoConfig",
        reread_seconds=reread_seconds,
        clock=clock,
    )
    tls = TLS(ca_file=str(ca_file))
    try:
        context = _ssl_context(tls, origin)
    except errors.ApiError as exc:
        raise _no_config(f"{ca_file} is not a usable CA certificate ({exc.message})") from None
    return ClientConfig(
        server=f"https://{host}:{port}",
        origin=origin,
        authorization=authorization,
        tls=tls,
        ssl_context=context,
    )


def _no_config(problem: str) -> errors.ApiError:
    return errors.ApiError(
        0,
        "NoConfig",
        f"in-cluster config: {problem}; the Pod needs its service account credentials mounted "
        "(automountServiceAccountToken must not be false), or pass --kubeconfig",
    )


# Credentials -----------------------------------------------------------------------------------------


class StaticAuthorization:
    """The same header for every request (a kubeconfig token or basic credentials), or none."""

    def __init__(self, value: str | None) -> None:
        self._value = value

    async def __call__(self) -> str | None:
        return self._value


class FileToken:
    """A bearer token read from a file, and read again every ``reread_seconds``.

    Bound service-account tokens are rotated by the kubelet well before they expire; reading the file
    once would leave a long-running process with an expired token. When a re-read fails, the last
    token is kept and the read is tried again shortly (as client-go's cached token source does).
    """

    def __init__(
        self,
        path: str,
        *,
        field: str,
        reason: str = "BadKubeconfig",
        reread_seconds: float = TOKEN_REREAD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._field = field
        self._reread = reread_seconds
        self._clock = clock
        try:
            self._token = self._read()
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise errors.ApiError(
                0,
                reason,
                f"{field}: cannot use {path}: {_describe(exc)}; point it at a file holding the token",
            ) from None
        self._next_read = clock() + reread_seconds

    def _read(self) -> str:
        with open(self.path, encoding="utf-8") as f:
            token = f.read().strip()
        if not token:
            raise ValueError("the file is empty")
        return token

    async def __call__(self) -> str:
        now = self._clock()
        if now >= self._next_read:
            try:
                token = self._read()
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                log.warning(
                    "%s: cannot re-read %s (%s); keeping the previous token", self._field, self.path, exc
                )
                self._next_read = now + min(10.0, self._reread)
            else:
                if token != self._token:
                    log.info("%s: %s changed; using the new token", self._field, self.path)
                self._token = token
                self._next_read = now + self._reread
        return f"Bearer {self._token}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


# TLS -------------------------------------------------------------------------------------------------


def _ssl_context(tls: TLS, origin: str) -> ssl.SSLContext:
    """The client context: CA (else the system's), client certificate, verification as configured."""
    cadata: str | bytes | None = None
    where = "the system CA store"
    if tls.ca_data is not None:
        cadata = _pem_or_der(tls.ca_data)
        where = "certificate-authority-data"
    elif tls.ca_file is not None:
        cadata = _pem_or_der(_read_file(tls.ca_file, "certificate-authority", origin))
        where = f"certificate-authority {tls.ca_file}"
    try:
        context = ssl.create_default_context(cadata=cadata)
    except (ssl.SSLError, ValueError) as exc:
        raise _bad(
            f"{origin}: {where} holds no usable CA certificate ({exc}); it must be the PEM of the "
            "cluster's CA"
        ) from None
    if tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file or tls.cert_data:
        _load_client_certificate(context, tls, origin)
    return context


def _pem_or_der(data: bytes) -> str | bytes:
    return data.decode("ascii", errors="replace") if b"-----BEGIN" in data else data


def _read_file(path: str, field: str, origin: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _bad(
            f"{origin}: {field} {path} cannot be read ({_describe(exc)}); fix the path (relative paths "
            "are relative to the kubeconfig's directory) or use the -data form"
        ) from None


def _load_client_certificate(context: ssl.SSLContext, tls: TLS, origin: str) -> None:
    # The ssl module loads certificate chains from files only: material given as data goes through a
    # private temporary directory that is removed as soon as it is loaded.
    with tempfile.TemporaryDirectory(prefix="mcosup-kube-") as tmp:
        cert = tls.cert_file
        if cert is None:
            cert = os.path.join(tmp, "client.crt")
            Path(cert).write_bytes(tls.cert_data or b"")
        else:
            _read_file(cert, "client-certificate", origin)
        key = tls.key_file
        if key is None:
            key = os.path.join(tmp, "client.key")
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(tls.key_data or b"")
        else:
            _read_file(key, "client-key", origin)
        try:
            # A password callback, so an encrypted key fails instead of prompting on the terminal.
            context.load_cert_chain(cert, key, password=lambda: b"")
        except (ssl.SSLError, ValueError) as exc:
            raise _bad(
                f"{origin}: the user's client-certificate and client-key cannot be used together ({exc}); "
                "they must be the PEM certificate and its unencrypted PEM private key"
            ) from None
