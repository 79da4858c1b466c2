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
- a user with ``exec`` or ``auth-provider`` is handed to kubernetes_asyncio's loader, which runs the
  plugin protocols (:func:`mcosup.kube.credentials.from_plugin`, which imports that library only then).

Without a kubeconfig, the in-cluster config: ``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT``
and the service account's ``token`` and ``ca.crt``.

The credentials themselves (header sources, token files re-read, TLS contexts, plugins) are in
:mod:`mcosup.kube.credentials`. Every problem is an :class:`~mcosup.kube.errors.ApiError` with status
0 and reason ``BadKubeconfig`` (or ``NoConfig`` when there is no configuration at all) whose message
names the file, the field and the fix.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mcosup.kube import errors, transport
from mcosup.kube.credentials import (
    TLS,
    TOKEN_REREAD_SECONDS,
    Authorization,
    FileToken,
    StaticAuthorization,
    from_plugin,
    read_problem,
    ssl_context,
)
from mcosup.runtime.settings import KubeSettings

#: Where Kubernetes mounts a Pod's service-account credentials.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


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


_bad = errors.bad_kubeconfig


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
    try:
        # JSON is YAML, and kubectl reads either: a JSON kubeconfig (what the emulator's kubelet stand-in
        # gives each Pod, as a real one gives a token and a CA) is read without loading the YAML parser,
        # which costs a Pod's start more than the rest of reading the file.
        doc = json.loads(text)
    except ValueError:
        doc = _read_yaml(path, text)
    if doc is None:
        return {}  # an empty file is an empty configuration, as for kubectl
    if not isinstance(doc, dict):
        raise _bad(
            f"kubeconfig {path} holds a YAML {type(doc).__name__}, not a mapping with clusters, users "
            "and contexts; is it the right file?"
        )
    return doc


def _read_yaml(path: Path, text: str) -> Any:
    import yaml  # here, not at the top: in-cluster processes (the builder pod) start faster without it

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise _bad(
            f"kubeconfig {path} is not valid YAML{at}: {problem}; fix the file (kubectl config view "
            "shows what kubectl makes of it)"
        ) from None


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
        server, tls, authorization = await from_plugin(paths, context.name, origin)
    else:
        tls = _cluster_tls(cluster, user) if https else None
        authorization = _user_authorization(user, reread_seconds)
    return ClientConfig(
        server=server,
        origin=origin,
        authorization=authorization,
        tls=tls,
        ssl_context=ssl_context(tls, origin) if tls else None,
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
        return StaticAuthorization(transport.basic_authorization(username, password))
    return StaticAuthorization(None)


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
        raise _no_config(f"cannot read {ca_file} ({read_problem(exc)})") from None
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
        context = ssl_context(tls, origin)
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
