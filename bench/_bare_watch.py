"""The baseline for bench/supervisor_scale.py: list+watch of the same objects with kubernetes_asyncio alone.

Prints one JSON line when every list is in ("ready") and one when it has seen ``expected`` node events.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
from kubernetes_asyncio import client, config, watch


async def main(kubeconfig: str, namespace: str, expected: int) -> None:
    await config.load_kube_config(config_file=kubeconfig)
    async with client.ApiClient() as api:
        core = client.CoreV1Api(api)
        custom = client.CustomObjectsApi(api)
        group, version = "machineconfiguration.openshift.io", "v1"
        nodes = await core.list_node()
        await custom.list_cluster_custom_object(group, version, "machineconfigpools")
        await custom.list_cluster_custom_object(group, version, "machineconfigs")
        await core.list_namespaced_config_map(namespace)
        await core.list_namespaced_secret(namespace)
        await core.list_namespaced_pod(namespace)
        print(orjson.dumps({"ready": time.monotonic(), "nodes": len(nodes.items)}).decode(), flush=True)
        seen = 0
        w = watch.Watch()
        async for _ in w.stream(
            core.list_node, resource_version=nodes.metadata.resource_version, timeout_seconds=3600
        ):
            seen += 1
            if seen == expected:
                print(orjson.dumps({"events": seen, "at": time.monotonic()}).decode(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
