"""`mcosup daemon`: the per-node agent (contract section 6), the composition root of its process.

Exit status: 0 after SIGTERM/SIGINT, :data:`REBOOT_EXIT_CODE` after the host accepted a reboot (the
kubelet starts the pod again after boot, or the emulator's stand-in does at once), 2 for bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import signal
import sys
from collections.abc import Mapping

from mcosup.daemon.agent import Agent
from mcosup.daemon.executor import RebootRequested
from mcosup.daemon.host import BACKENDS, LocalHost
from mcosup.runtime import settings as s
from mcosup.runtime.logs import fields
from mcosup.runtime.settings import AgentSettings

HELP = "the per-node agent: applies config (legacy), rebases onto the image (layered), writes certificates"

#: Exit status after the host accepted a reboot; distinct from crashes (1) and usage errors (2).
REBOOT_EXIT_CODE = 75

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--node-name",
        default=os.environ.get("NODE_NAME", ""),
        help="the Node this daemon runs on (default: $NODE_NAME, set from the downward API)",
    )
    parser.add_argument(
        "--root", default="/rootfs", help="where the host's / is mounted (default: %(default)s)"
    )
    parser.add_argument(
        "--kubeconfig", default=None, help="kubeconfig path (default: $KUBECONFIG, else in-cluster)"
    )
    parser.add_argument(
        "--host-exec",
        default=os.environ.get("MCOSUP_HOST_EXEC", ""),
        help="prefix for host commands, e.g. 'chroot /rootfs' (default: $MCOSUP_HOST_EXEC, or run them "
        "from PATH with systemctl --root)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("MCOSUP_HOST_BACKEND") or "rpm-ostree",
        help="how the host switches OS images (default: $MCOSUP_HOST_BACKEND or rpm-ostree)",
    )


def main(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if not args.node_name:
        print("mcosup daemon: --node-name (or $NODE_NAME) is required", file=sys.stderr)
        return 2
    # Settings and credentials that cannot work end the command with one line (mcosup.cli); once the
    # agent runs it retries everything itself.
    return asyncio.run(serve(args, env))


def agent_settings(env: Mapping[str, str]) -> AgentSettings:
    return AgentSettings(
        resync=s.env_float(env, "MCOSUP_DAEMON_RESYNC", AgentSettings.resync, minimum=0.1),
        backoff_initial=s.env_float(
            env, "MCOSUP_DAEMON_BACKOFF", AgentSettings.backoff_initial, minimum=0.01
        ),
        backoff_max=s.env_float(env, "MCOSUP_DAEMON_BACKOFF_MAX", AgentSettings.backoff_max, minimum=0.01),
    )


async def serve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    # Imported here so `mcosup --help` does not pay for the client library.
    from mcosup.daemon.cluster import KubeCluster
    from mcosup.kube import client as kclient

    settings = agent_settings(env)
    #: Seconds to wait for the host to take the process down after `systemctl reboot` before exiting
    #: anyway; the fake host reboots at once and sets it to 0.
    reboot_grace = s.env_float(env, "MCOSUP_DAEMON_REBOOT_GRACE", 300.0)
    namespace = s.namespace_from_env(env)
    host = LocalHost(args.root, backend=args.backend, exec_prefix=shlex.split(args.host_exec))
    where = fields(node=args.node_name)
    main_task = asyncio.current_task()
    assert main_task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main_task.cancel)
    log.info("starting on root %s with the %s backend", args.root, args.backend, extra=where)
    try:
        async with kclient.connect(s.KubeSettings.from_env(env, kubeconfig=args.kubeconfig)) as kube:
            cluster = KubeCluster(kube, node_name=args.node_name, namespace=namespace)
            agent = Agent(cluster, host, node_name=args.node_name, settings=settings)
            try:
                async with asyncio.TaskGroup() as tg:
                    for informer in cluster.informers:
                        tg.create_task(informer.run(), name=f"informer {informer.resource}")
                    await cluster.wait_listed()
                    await agent.run()
            except* RebootRequested:
                pass
    except asyncio.CancelledError:
        log.info("stopping", extra=where)
        return 0
    log.info("host is rebooting; exiting with status %d", REBOOT_EXIT_CODE, extra=where)
    if reboot_grace > 0:
        await asyncio.sleep(reboot_grace)
    return REBOOT_EXIT_CODE
