"""Cluster set-up shared by the controller and end-to-end suites."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube.resources import CONFIGMAPS, SECRETS
from mcosup.model import names
from mcosup.sim.objects import docker_secret

NS = names.DEFAULT_NAMESPACE


class SupervisorHandle:
    def __init__(self, task: asyncio.Task[None], identity: str):
        self.task = task
        self.identity = identity

    async def stop(self) -> None:
        """SIGTERM-equivalent: cancel the root task and wait for its bounded cleanup."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


StartSupervisor = Callable[..., Awaitable[SupervisorHandle]]


async def install_build_config(
    kube: kclient.Kube, pullspec: str = "registry.local:5000/os/image:latest"
) -> None:
    for name in ("pull-secret", "push-secret"):
        with contextlib.suppress(errors.AlreadyExists):
            await kube.create(
                SECRETS, docker_secret(name, NS, "registry.local:5000", ("u", "p")), namespace=NS
            )
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": names.BUILD_CONFIG_CM, "namespace": NS},
        "data": {
            names.BASE_IMAGE_PULL_SECRET_KEY: "pull-secret",
            names.FINAL_IMAGE_PUSH_SECRET_KEY: "push-secret",
            names.FINAL_IMAGE_PULLSPEC_KEY: pullspec,
        },
    }
    try:
        await kube.create(CONFIGMAPS, body, namespace=NS)
    except errors.AlreadyExists:
        await kube.patch(CONFIGMAPS, names.BUILD_CONFIG_CM, {"data": body["data"]}, namespace=NS)
