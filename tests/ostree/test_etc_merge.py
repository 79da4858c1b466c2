"""The /etc merge cases the daemon meets, on a real sysroot (issue 19; the daemon's docs list them).

A real ``mcosup daemon`` on an :class:`~mcosup.sim.ostreehost.OstreeHost` is taken legacy → layered →
layered with a changed image → back to legacy, as the supervisor would, against the API emulator; the
images come from the local registry, made as the builder makes them (the stock layers, then the
rendered config's files owned by root). Each row of ``CASES`` is one /etc path and what the host must
hold after each stage: (contents, mode, owner uid), or None for absent.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from imagekit import BOOTABLE, Layer, config_layer, push_image

from mcosup.kube import client as kclient
from mcosup.kube.resources import NODES
from mcosup.model import names
from mcosup.runtime.settings import KubeSettings
from mcosup.sim import fakehost
from mcosup.sim.objects import machineconfig
from mcosup.sim.ostreehost import OstreeHost
from mcosup.sim.registry import Registry
from waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

NODE = "worker-0"
NS = names.DEFAULT_NAMESPACE
CORE = 1000
Want = tuple[str, int, int] | None

STOCK_ETC: Layer = {"etc/chrony.conf": "pool stock\n", "etc/neither.conf": "stock\n"}

#: path -> (legacy config's, first layered config's, second layered config's) contents (None: not in it).
CONFIGS: dict[str, tuple[str | None, str | None, str | None]] = {
    "/etc/merge/legacy-only.conf": ("legacy\n", None, None),
    "/etc/merge/both-same.conf": ("same\n", "same\n", "same v2\n"),
    "/etc/merge/both-changed.conf": ("legacy\n", "image\n", "image\n"),
    "/etc/merge/both-owner.conf": ("owned\n", "owned\n", "owned v2\n"),
    "/etc/chrony.conf": ("pool legacy\n", "pool image\n", "pool image\n"),
    "/etc/merge/image-only.conf": (None, "image\n", "image\n"),
}
#: Files owned by core in every config (the builder writes them as root into the image).
OWNED_BY_CORE = {"/etc/merge/both-owner.conf"}
#: Carried by the images only (a custom Containerfile's file), in no config.
CONTAINERFILE = "/etc/merge/containerfile.conf"

# path, case, after the opt-in, after the layered change, after the opt-out.
CASES: list[tuple[str, str, Want, Want, Want]] = [
    (
        "/etc/merge/legacy-only.conf",
        "legacy-written, dropped by the layered config: not left on the layered node",
        None,
        None,
        None,
    ),
    (
        "/etc/merge/both-same.conf",
        "both, same bytes: the image's copy, and the image's changes reach it",
        ("same\n", 0o644, 0),
        ("same v2\n", 0o644, 0),
        ("same v2\n", 0o644, 0),
    ),
    (
        "/etc/merge/both-changed.conf",
        "both, changed around the opt-in: the image's content, not the legacy one",
        ("image\n", 0o644, 0),
        ("image\n", 0o644, 0),
        ("image\n", 0o644, 0),
    ),
    (
        "/etc/merge/both-owner.conf",
        "both, same bytes, legacy wrote it as core: the image's root-owned copy, which then changes",
        ("owned\n", 0o644, 0),
        ("owned v2\n", 0o644, 0),
        ("owned v2\n", 0o644, CORE),
    ),
    (
        "/etc/chrony.conf",
        "a stock default legacy overrode, the image carries another: the image's",
        ("pool image\n", 0o644, 0),
        ("pool image\n", 0o644, 0),
        ("pool image\n", 0o644, 0),
    ),
    (
        "/etc/merge/image-only.conf",
        "image-carried, in the layered configs: the image's, then written again after the opt-out",
        ("image\n", 0o644, 0),
        ("image\n", 0o644, 0),
        ("image\n", 0o644, 0),
    ),
    (
        CONTAINERFILE,
        "image-carried only (custom Containerfile): there while layered, gone with the image",
        ("containerfile\n", 0o644, 0),
        ("containerfile\n", 0o644, 0),
        None,
    ),
    (
        "/etc/neither.conf",
        "neither: the stock default throughout",
        ("stock\n", 0o644, 0),
        ("stock\n", 0o644, 0),
        ("stock\n", 0o644, 0),
    ),
]


def config(name: str, stage: int) -> dict[str, Any]:
    files = {path: (texts[stage], 0o644) for path, texts in CONFIGS.items() if texts[stage] is not None}
    mc = machineconfig(name, None, files)
    for f in mc["spec"]["config"]["storage"]["files"]:
        if f["path"] in OWNED_BY_CORE:
            f["user"] = {"name": "core"}
    return mc


def image_layer(stage: int, name: str) -> Layer:
    """What the builder adds on the stock image for the config of ``stage``, and a custom file."""
    return {**config_layer(config(name, stage)), CONTAINERFILE.lstrip("/"): "containerfile\n"}


def seen(host: OstreeHost, path: str) -> Want:
    full = host.rootfs / path.lstrip("/")
    try:
        st = full.lstat()
    except FileNotFoundError:
        return None
    assert stat.S_ISREG(st.st_mode), path
    return full.read_text(), stat.S_IMODE(st.st_mode), st.st_uid


class Node:
    def __init__(self, kube: kclient.Kube):
        self.kube = kube

    async def target(self, mode: str, config: str, image: str | None = None) -> None:
        """The supervisor's one patch: mode label and desired* together."""
        patch = {names.DESIRED_CONFIG: config, names.DESIRED_IMAGE: image}
        await self.kube.patch(
            NODES, NODE, {"metadata": {"labels": {names.DAEMON_MODE: mode}, "annotations": patch}}
        )

    async def done(self, config: str, image: str | None, handle: fakehost.DaemonHandle) -> None:
        async def check() -> bool:
            node = await self.kube.get(NODES, NODE)
            ann: Mapping[str, str] = node["metadata"].get("annotations") or {}
            return (
                ann.get(names.STATE) == names.STATE_DONE
                and ann.get(names.CURRENT_CONFIG) == config
                and ann.get(names.CURRENT_IMAGE) == image
            )

        try:
            await eventually(check, within=90, what=f"{NODE} Done on {config} / {image}")
        except BaseException:
            print(handle.log()[-4000:])
            raise


@pytest.fixture
async def node(emulator: Any, admin_kubeconfig: Path) -> AsyncIterator[Node]:
    await emulator.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    # Ready, as its kubelet reports: the daemon's health gate waits for it after booting a new image.
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    await emulator.create_object(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}, "status": ready}
    )
    async with kclient.connect(KubeSettings(kubeconfig=str(admin_kubeconfig))) as kube:
        yield Node(kube)


async def test_etc_merge_cases_on_a_real_sysroot(
    emulator: Any,
    admin_kubeconfig: Path,
    node: Node,
    ostree_hosts: Path,
    image_registry: Registry,
    pull_url: str,
) -> None:
    stock_layers = [BOOTABLE, STOCK_ETC]
    stock = await asyncio.to_thread(push_image, image_registry, "os/stock", stock_layers)
    stages = ("rendered-legacy", "rendered-layered-1", "rendered-layered-2")
    images = []
    for stage, name in enumerate(stages):
        await emulator.create_object(config(name, stage))
        if stage:
            layers = [*stock_layers, image_layer(stage, name)]
            images.append(await asyncio.to_thread(push_image, image_registry, "os/worker", layers, name))
    await emulator.create_object(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": names.OSIMAGEURL_CM, "namespace": NS},
            "data": {names.BASE_OS_CONTAINER_IMAGE_KEY: stock},
        }
    )
    host = await asyncio.to_thread(OstreeHost, ostree_hosts / NODE, image=stock, registry=pull_url)
    kubeconfig = emulator.write_kubeconfig_for_service_account(
        admin_kubeconfig.parent / "daemon.kubeconfig", NS, names.DAEMON_SA, node_name=NODE
    )
    async with fakehost.daemon(host, NODE, kubeconfig=kubeconfig) as handle:
        await node.target(names.MODE_LEGACY, "rendered-legacy")
        await node.done("rendered-legacy", None, handle)
        for path, (legacy, _, _) in CONFIGS.items():
            owner = CORE if path in OWNED_BY_CORE else 0
            assert seen(host, path) == (None if legacy is None else (legacy, 0o644, owner)), path

        after: list[dict[str, Want]] = []
        for name, image in zip(stages[1:], images, strict=True):
            await node.target(names.MODE_LAYERED, name, image)
            await node.done(name, image, handle)
            assert host.booted_image() == image
            after.append({path: seen(host, path) for path, *_ in CASES})

        await node.target(names.MODE_LEGACY, "rendered-layered-2")
        await node.done("rendered-layered-2", None, handle)
        assert host.booted().checksum == host.stock_commit
        after.append({path: seen(host, path) for path, *_ in CASES})

    want = {path: list(stages) for path, _, *stages in CASES}
    got = {path: [a[path] for a in after] for path in want}
    assert got == want, "\n".join(
        f"{case}: {got[path]} != {want[path]}" for path, case, *_ in CASES if got[path] != want[path]
    )
    assert not await asyncio.to_thread(os.path.lexists, host.rootfs / "etc/mco/machineconfig-revert.json")
