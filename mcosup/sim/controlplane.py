"""A real Kubernetes control plane on this machine: etcd, kube-apiserver and kube-controller-manager.

The binaries are built from the Kubernetes Go modules at the release pinned in ``tests/controlplane/``
by ``scripts/controlplane.sh`` (cached by version; :func:`binaries` builds what is missing).
:class:`ControlPlane` starts them on loopback under a temporary directory, the way Kubernetes' own
integration tests and controller-runtime's envtest do, and stops everything on the way out:

- etcd on two free loopback ports, data in the work dir, ``--unsafe-no-fsync`` (tests only);
- kube-apiserver on a loopback secure port with a generated CA and serving certificate, an admin
  identity (a static token in group ``system:masters``), ``--authorization-mode=Node,RBAC``, a
  service-account issuer and signing key (so TokenRequest works) and the default admission plugins.
  A host without a default route makes kube-apiserver refuse to pick an advertise address, so it gets
  one from the documentation range with the endpoint reconciler off: no client ever uses that address,
  every client (mcosup, kubectl, kube-controller-manager) is given the loopback URL;
- kube-controller-manager with only the controllers a test cluster needs: garbage collector,
  namespace, disruption (the Eviction API needs PDB status), service account and token, root CA
  publisher, job. Never the node-lifecycle controller: with no kubelet it would taint and evict.

A start that fails names the binary and shows the tail of its log. Service-account identities come
from the TokenRequest API (:meth:`ControlPlane.service_account_token`), bound to a Node when asked so
the token carries the node name the way a kubelet-mounted token of a Pod on that node does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mcosup.http import certs
from mcosup.sim.registry import free_port

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "controlplane.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
#: Never a target of any traffic: kube-apiserver only needs *an* address that is not loopback.
ADVERTISE_ADDRESS = "192.0.2.1"
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "disruption-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "job-controller",
)
ADMIN_USER = "mcosup-admin"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message names the binary and why."""


def binaries(*, build: bool = True) -> Path:
    """The directory holding the four binaries; builds the missing ones first unless ``build`` is False.

    ``MCOSUP_CONTROLPLANE_BIN`` names a directory of ready binaries instead (nothing is built then).
    """
    override = os.environ.get("MCOSUP_CONTROLPLANE_BIN")
    if override:
        directory = Path(override)
    else:
        if not BUILD_SCRIPT.exists():
            raise ControlPlaneError(
                f"{BUILD_SCRIPT} not found: the real control plane is built from a checkout of mcosup "
                "(or set MCOSUP_CONTROLPLANE_BIN to a directory holding " + ", ".join(BINARIES) + ")"
            )
        args = [str(BUILD_SCRIPT)] + ([] if build else ["--dir"])
        done = subprocess.run(args, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ControlPlaneError(f"{BUILD_SCRIPT.name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        directory = Path(done.stdout.strip().splitlines()[-1])
    missing = [b for b in BINARIES if not os.access(directory / b, os.X_OK)]
    if missing:
        raise ControlPlaneError(
            f"missing control-plane binaries in {directory}: {', '.join(missing)} "
            f"(build them with {BUILD_SCRIPT.relative_to(REPO)})"
        )
    return directory


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class _Process:
    """One control-plane binary run as a child process (its own process group) with its log in a file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )

    def failed(self, why: str) -> ControlPlaneError:
        code = self.proc.poll() if self.proc is not None else None
        state = f"exited with {code}" if code is not None else "still running"
        return ControlPlaneError(
            f"{self.name} did not start ({why}; {state}); "
            f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
        )

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise self.failed("the process ended")

    def stop(self, grace: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class ControlPlane:
    """``async with ControlPlane() as cp:`` — ``cp.url``, ``cp.write_kubeconfig(path)`` (admin)."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        bin_dir: Path | None = None,
        startup_seconds: float = 120.0,
        controllers: Sequence[str] = CONTROLLERS,
        extra_apiserver_args: Sequence[str] = (),
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="mcosup-controlplane-"))
        self._bin_dir = bin_dir
        self.startup_seconds = startup_seconds
        self.controllers = tuple(controllers)
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        self.port = 0
        self.url = ""
        #: etcd's client URL (plain HTTP on loopback), for tests that act on the store underneath.
        self.etcd_url = ""
        self.ca_pem = b""
        self.admin_token = ""
        self._processes: list[_Process] = []

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = binaries()
        return self._bin_dir

    def binary(self, name: str) -> str:
        return str(self.bin_dir / name)

    # ----------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> ControlPlane:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def __enter__(self) -> ControlPlane:
        self.start_blocking()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_blocking()

    async def start(self) -> None:
        await asyncio.to_thread(self.start_blocking)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_blocking)

    def start_blocking(self) -> None:
        """Start etcd, kube-apiserver and kube-controller-manager; on failure stop what started."""
        try:
            self._start()
        except BaseException:
            self.stop_blocking()
            raise

    def _start(self) -> None:
        bin_dir = self.bin_dir
        pki = self.workdir / "pki"
        self._write_pki(pki)
        etcd_port, peer_port = free_port(), free_port()
        etcd_url = self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        etcd = _Process(
            "etcd",
            [
                str(bin_dir / "etcd"),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            self.workdir / "etcd.log",
        )
        self._launch(etcd, lambda: self._http_ok(f"{etcd_url}/health"))

        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        apiserver = _Process(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--advertise-address={ADVERTISE_ADDRESS}",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--service-cluster-ip-range=10.96.0.0/24",
                "--allow-privileged=true",
                f"--service-account-issuer={self.url}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-max-token-expiration=48h",
                f"--cert-dir={pki / 'generated'}",
                "--profiling=false",
                *self.extra_apiserver_args,
            ],
            self.workdir / "kube-apiserver.log",
        )
        self._launch(apiserver, self._apiserver_ready)

        admin = self.write_kubeconfig(self.workdir / "admin.kubeconfig")
        kcm = _Process(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={admin}",
                "--leader-elect=false",
                "--controllers=" + ",".join(self.controllers),
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=true",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--concurrent-gc-syncs=4",
            ],
            self.workdir / "kube-controller-manager.log",
        )
        self._launch(kcm, self._controllers_running)
        log.info("control plane serving on %s (binaries in %s)", self.url, bin_dir)

    def stop_blocking(self) -> None:
        """Stop every process, newest first (SIGTERM, then SIGKILL after a bounded wait)."""
        while self._processes:
            self._processes.pop().stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _launch(self, process: _Process, ready: Callable[[], str | None]) -> None:
        self._processes.append(process)
        process.start()
        deadline = time.monotonic() + self.startup_seconds
        while True:
            process.check_alive()
            why = ready()
            if why is None:
                return
            if time.monotonic() > deadline:
                raise process.failed(f"not ready after {self.startup_seconds:.0f} s: {why}")
            time.sleep(0.2)

    # -------------------------------------------------------------------------------- readiness

    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem.decode())

    def _http_ok(self, url: str, token: str | None = None) -> str | None:
        request = urllib.request.Request(url)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        context = self._ssl() if url.startswith("https") else None
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as resp:
                return None if resp.status == 200 else f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')}"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    def _apiserver_ready(self) -> str | None:
        return self._http_ok(f"{self.url}/readyz", self.admin_token)

    def _controllers_running(self) -> str | None:
        # The service-account controller making `default` in a namespace shows the manager is working.
        try:
            self.call("GET", "/api/v1/namespaces/default/serviceaccounts/default")
        except ControlPlaneError as exc:
            return str(exc)
        return None

    # ----------------------------------------------------------------------------------- identities

    def _write_pki(self, pki: Path) -> None:
        pki.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        ca = certs.generate_ca(now=now, validity=dt.timedelta(days=30), common_name="mcosup-controlplane-ca")
        serving = certs.issue_serving_cert(
            ca,
            ["127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
            now=now,
            validity=dt.timedelta(days=30),
        )
        self.ca_pem = ca.cert_pem
        (pki / "ca.crt").write_bytes(ca.cert_pem)
        (pki / "apiserver.crt").write_bytes(serving.cert_pem)
        (pki / "apiserver.key").write_bytes(serving.key_pem)
        (pki / "apiserver.key").chmod(0o600)
        # Service-account tokens are signed with RSA (the apiserver's default for a PEM key file).
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (pki / "sa.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (pki / "sa.key").chmod(0o600)
        (pki / "sa.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self.admin_token = secrets.token_urlsafe(32)
        (pki / "tokens.csv").write_text(f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        (pki / "tokens.csv").chmod(0o600)

    def pids(self, *names: str) -> list[int]:
        """The process ids of the running binaries named (all when none is), for measuring their CPU."""
        return [p.proc.pid for p in self._processes if p.proc is not None and (not names or p.name in names)]

    def write_kubeconfig(self, path: str | Path, token: str | None = None, user: str = ADMIN_USER) -> Path:
        """A kubeconfig for the loopback URL with ``token`` (default: the admin's)."""
        if not self.url:
            raise ControlPlaneError("start the control plane before writing a kubeconfig")
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "mcosup-controlplane",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token or self.admin_token}}],
            "contexts": [
                {"name": "mcosup-controlplane", "context": {"cluster": "mcosup-controlplane", "user": user}}
            ],
            "current-context": "mcosup-controlplane",
            "preferences": {},
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def service_account_token(
        self, namespace: str, name: str, *, node: str | None = None, seconds: int = 48 * 3600
    ) -> str:
        """A token for ``system:serviceaccount:<namespace>:<name>`` from the TokenRequest API (blocking).

        With ``node``, the token is bound to that Node object: the API server then puts the node's name
        in the user's extra (``authentication.kubernetes.io/node-name``), and the token dies with it.
        """
        spec: dict[str, Any] = {"expirationSeconds": seconds}
        if node is not None:
            node_obj = self.call("GET", f"/api/v1/nodes/{node}")
            spec["boundObjectRef"] = {
                "apiVersion": "v1",
                "kind": "Node",
                "name": node,
                "uid": node_obj["metadata"]["uid"],
            }
        answer = self.call(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        return str(answer["status"]["token"])

    def write_kubeconfig_for_service_account(
        self, path: str | Path, namespace: str, name: str, node: str | None = None
    ) -> Path:
        """A kubeconfig with a fresh token of the ServiceAccount (bound to ``node`` when given; blocking)."""
        token = self.service_account_token(namespace, name, node=node)
        return self.write_kubeconfig(path, token, user=f"system:serviceaccount:{namespace}:{name}")

    # ----------------------------------------------------------------------------------- admin calls

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One API call as the admin, blocking (for set-up; product code uses :mod:`mcosup.kube`)."""
        data = orjson.dumps(body) if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.admin_token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30, context=self._ssl()) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:2000].decode(errors="replace")
            raise ControlPlaneError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        except OSError as exc:
            raise ControlPlaneError(f"{method} {path}: {exc}") from None
        return orjson.loads(payload) if payload else None

    async def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(self.call, method, path, body)

    def kubectl(self, *args: str, kubeconfig: Path | None = None, input: str | None = None) -> str:
        """Run the kubectl built with this control plane (blocking); raises with its stderr on failure."""
        config = kubeconfig or self.workdir / "admin.kubeconfig"
        done = subprocess.run(
            [self.binary("kubectl"), f"--kubeconfig={config}", *args],
            capture_output=True,
            text=True,
            input=input,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}"
            )
        return done.stdout
