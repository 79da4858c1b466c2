"""Helpers of the daemon suites."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from mcosup.daemon import plan as p
from mcosup.kube import client as kclient
from mcosup.kube.resources import CONFIGMAPS, NODES
from mcosup.model import names
from mcosup.sim.fakehost import FakeHost
from mcosup.sim.objects import machineconfig
from waiting import eventually

NODE = "worker-0"
KEY = "ssh-ed25519 AAAAC3 admin@example"
NS = names.DEFAULT_NAMESPACE


class Registry:
    """The slice of the registry API the fake rebase uses: a manifest (HEAD or GET) and its config."""

    def __init__(self) -> None:
        #: (repository, digest) -> the digest of the image's config; config digest -> its labels.
        self.manifests: dict[tuple[str, str], str] = {}
        self.configs: dict[str, dict[str, str]] = {}
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        key = (request.match_info["repo"], request.match_info["ref"])
        if key not in self.manifests:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        manifest = {"schemaVersion": 2, "config": {"digest": self.manifests[key]}, "layers": []}
        return web.json_response(manifest, headers={"Docker-Content-Digest": key[1]})

    async def config(self, request: web.Request) -> web.Response:
        labels = self.configs.get(request.match_info["digest"])
        if labels is None:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        return web.json_response({"config": {"Labels": labels}})

    def push(self, image: str, labels: Mapping[str, str] | None = None) -> None:
        """Make ``host/repo@digest`` exist, its config carrying ``labels``."""
        _, _, rest = image.partition("/")
        repo, _, digest = rest.partition("@")
        config = f"sha256:{len(self.configs):064x}"
        self.manifests[(repo, digest)] = config
        self.configs[config] = dict(labels or {})


def rendered(
    name: str,
    files: Mapping[str, tuple[str, int]] = {},
    units: list[dict[str, Any]] | None = None,
    kargs: list[str] | None = None,
    keys: list[str] | None = None,
    password: str | None = None,
) -> dict[str, Any]:
    """A rendered MachineConfig (no role label) for the daemon to apply."""
    return machineconfig(
        name,
        None,
        files,
        units or [],
        ssh_keys=keys or [],
        kernel_arguments=kargs or [],
        password_hash=password,
    )


class MemoryCluster:
    def __init__(self) -> None:
        self.node_obj: dict[str, Any] = {
            "metadata": {"name": NODE, "resourceVersion": "1", "annotations": {}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }
        #: The pool's mc/health-check-seconds.
        self.health_seconds = 600
        self.mcs: dict[str, dict[str, Any]] = {}
        self.cms: dict[str, dict[str, Any]] = {}
        self.patches: list[dict[str, str | None]] = []

    def node(self) -> dict[str, Any] | None:
        return copy.deepcopy(self.node_obj)

    def machineconfig(self, name: str) -> dict[str, Any] | None:
        return self.mcs.get(name)

    def configmap(self, name: str) -> dict[str, Any] | None:
        return self.cms.get(name)

    async def wait_changed(self, seconds: float) -> None:
        return None

    def health_check_seconds(self) -> int:
        return self.health_seconds

    async def patch_node_annotations(self, annotations: Mapping[str, str | None]) -> None:
        self.patches.append(dict(annotations))
        ann = self.node_obj["metadata"]["annotations"]
        for k, v in annotations.items():
            if v is None:
                ann.pop(k, None)
            else:
                ann[k] = v
        meta = self.node_obj["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

    def target(self, mode: str, config: str, image: str | None = None) -> None:
        meta = self.node_obj["metadata"]
        meta.setdefault("labels", {})[names.DAEMON_MODE] = mode
        meta["annotations"][names.DESIRED_CONFIG] = config
        if image:
            meta["annotations"][names.DESIRED_IMAGE] = image
        else:
            meta["annotations"].pop(names.DESIRED_IMAGE, None)

    def annotations(self) -> dict[str, str]:
        return dict(self.node_obj["metadata"]["annotations"])

    def configmap_data(self, name: str, data: dict[str, str]) -> None:
        self.cms[name] = {"metadata": {"name": name, "namespace": NS}, "data": data}


MC1 = rendered(
    "rendered-worker-1",
    files={"/etc/app/app.conf": ("x=1\n", 0o640), "/etc/old.conf": ("old\n", 0o600)},
    units=[
        {
            "name": "app.service",
            "enabled": True,
            "contents": "[Service]\nExecStart=/bin/app\n[Install]\nWantedBy=multi-user.target\n",
        },
        {"name": "docker.service", "dropins": [{"name": "10-opts.conf", "contents": "[Service]\n"}]},
        {"name": "crio.service", "mask": True},
    ],
    kargs=["nosmt"],
    keys=[KEY],
    password="$6$abc$def",
)
MC2 = rendered(
    "rendered-worker-2",
    files={"/etc/app/app.conf": ("x=2\n", 0o644)},
    units=[{"name": "docker.service", "enabled": True}],
    kargs=["mitigations=off"],
    keys=[KEY, "ssh-rsa BBBB second"],
)


class Cluster:
    def __init__(self, kube: kclient.Kube, kubeconfig: Path):
        self.kube = kube
        self.kubeconfig = kubeconfig

    async def annotations(self) -> dict[str, str]:
        node = await self.kube.get(NODES, NODE)
        return dict(node["metadata"].get("annotations") or {})

    async def target(self, mode: str, config: str, image: str | None = None) -> None:
        """The supervisor's one patch: mode label and desired* together."""
        await self.kube.patch(
            NODES,
            NODE,
            {
                "metadata": {
                    "labels": {names.DAEMON_MODE: mode},
                    "annotations": {names.DESIRED_CONFIG: config, names.DESIRED_IMAGE: image},
                }
            },
        )

    async def done(self, config: str, image: str | None = None, *, within: float = 60.0) -> None:
        async def check() -> bool:
            ann = await self.annotations()
            return (
                ann.get(names.STATE) == names.STATE_DONE
                and ann.get(names.CURRENT_CONFIG) == config
                and ann.get(names.CURRENT_IMAGE) == image
            )

        await eventually(check, within=within, what=f"node Done on {config} / {image}")

    async def configmap(self, name: str, data: dict[str, str]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NS},
            "data": data,
        }
        try:
            await self.kube.replace(CONFIGMAPS, name, body, namespace=NS)
        except Exception:
            await self.kube.create(CONFIGMAPS, body, namespace=NS)


def rebases(host: FakeHost) -> int:
    return sum(c[:2] == ["rpm-ostree", "rebase"] for c in host.command_log())


async def apply_legacy(cluster: Cluster, host: FakeHost) -> None:
    await cluster.target(names.MODE_LEGACY, "rendered-worker-1")
    await cluster.done("rendered-worker-1")


def assert_legacy_mc1(host: FakeHost) -> None:
    assert host.read("/etc/app/app.conf") == b"x=1\n" and host.mode("/etc/app/app.conf") == 0o640
    assert host.read("/etc/old.conf") == b"old\n" and host.mode("/etc/old.conf") == 0o600
    assert (
        host.read("/etc/systemd/system/app.service")
        == b"[Service]\nExecStart=/bin/app\n[Install]\nWantedBy=multi-user.target\n"
    )
    assert host.read("/etc/systemd/system/docker.service.d/10-opts.conf") == b"[Service]\n"
    assert host.unit_enabled("app.service") and host.unit_masked("crio.service")
    assert host.kargs() == ["root=/dev/vda4", "rw", "nosmt"]
    assert host.read(p.SSH_KEYS_FILE) == (KEY + "\n").encode()
    assert host.read(p.REVERT_FILE) is None
