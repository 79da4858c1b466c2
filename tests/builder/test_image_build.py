"""A generated Containerfile and context really build with buildah and land in a real registry."""

from __future__ import annotations

import asyncio
import base64
import io
import tarfile
from pathlib import Path

import pytest

from mcosup.builder import buildplan as bp
from mcosup.model import names, rendering
from mcosup.sim.registry import Registry, buildah_storage_args, read_image, run

pytestmark = pytest.mark.slow

UNIT = (
    "[Unit]\nDescription=hello\n[Service]\nExecStart=/usr/bin/true\n[Install]\nWantedBy=multi-user.target\n"
)


def machineconfig() -> dict[str, object]:
    return {
        "metadata": {"name": "50-test"},
        "spec": {
            "config": {
                "ignition": {"version": "3.2.0"},
                "storage": {
                    "files": [
                        {"path": "/etc/hello.conf", "mode": 0o600, "contents": {"source": "data:,hello%0A"}},
                        {
                            "path": "/usr/lib/tool",
                            "mode": 0o755,
                            "contents": {
                                "source": "data:;base64," + base64.b64encode(b"#!/bin/sh\n").decode()
                            },
                        },
                    ]
                },
                "systemd": {
                    "units": [
                        {"name": "hello.service", "enabled": True, "contents": UNIT},
                        {
                            "name": "docker.service",
                            "dropins": [{"name": "10-x.conf", "contents": "[Service]\n"}],
                        },
                    ]
                },
            }
        },
    }


async def test_generated_context_builds_and_pushes(
    registry: Registry, base_image: str, tmp_path: Path
) -> None:
    result = rendering.render("worker", [machineconfig()])
    plan = bp.plan(
        bp.BuildInputs(
            pool="worker",
            rendered_name=result.name,
            rendered_spec=result.spec,
            base_image=base_image,
            custom_containerfile="LABEL custom=yes",
            pullspec=f"{registry.host}/os/worker:latest",
        )
    )
    _, archive = plan.archive
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(ctx, filter="tar")
    (tmp_path / "Containerfile").write_text(plan.containerfile)
    storage = buildah_storage_args(tmp_path / "buildah")
    await run(
        "buildah",
        *storage,
        "bud",
        "--isolation",
        "chroot",
        "--tls-verify=false",
        *registry.creds_args,
        "-f",
        str(tmp_path / "Containerfile"),
        "-t",
        plan.target,
        str(ctx),
    )
    await run(
        "buildah",
        *storage,
        "push",
        "--tls-verify=false",
        *registry.creds_args,
        "--digestfile",
        str(tmp_path / "digest"),
        plan.target,
        f"docker://{plan.target}",
    )
    digest = (tmp_path / "digest").read_text().strip()

    repo, tag = plan.target.removeprefix(registry.host + "/").split(":")
    assert tag == f"worker-{plan.identity[:16]}"
    assert await asyncio.to_thread(registry.manifest_digest, repo, tag) == digest
    labels, files = await asyncio.to_thread(read_image, registry, repo, digest)
    assert labels[names.RENDERED_CONFIG_LABEL] == result.name
    assert labels[names.POOL_LABEL] == "worker"
    assert labels["custom"] == "yes"
    assert files["/usr/lib/os-release"].data.startswith(b'NAME="mcosup test OS"')
    assert files["/etc/hello.conf"].data == b"hello\n" and files["/etc/hello.conf"].mode & 0o7777 == 0o600
    assert files["/usr/lib/tool"].mode & 0o7777 == 0o755
    assert files["/etc/systemd/system/hello.service"].data == UNIT.encode()
    wants = files["/etc/systemd/system/multi-user.target.wants/hello.service"]
    assert wants.link == "/etc/systemd/system/hello.service"
    assert files["/etc/systemd/system/docker.service.d/10-x.conf"].data == b"[Service]\n"
