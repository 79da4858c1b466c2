"""`mcosup sim serve`: run the Kubernetes API emulator until SIGTERM/SIGINT.

Writes an admin kubeconfig (user `admin`, group `system:masters`) to `--kubeconfig`, prints the
URL, and serves. `--crds DIR` installs the CRD manifests found there first (e.g. the MCO CRDs).
`--kubelet` runs the kubelet stand-in once `mcosup.sim.kubelet` exists; until then it says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

HELP = "the Kubernetes API emulator (serve)"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sim_command", required=True, metavar="ACTION")
    serve = sub.add_parser("serve", help="serve the emulator until SIGTERM/SIGINT")
    serve.add_argument("--kubeconfig", required=True, type=Path, help="where to write the admin kubeconfig")
    serve.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument(
        "--crds", type=Path, default=None, help="a directory of CRD manifests (*.yaml) to install first"
    )
    serve.add_argument(
        "--history-window",
        type=int,
        default=1000,
        help="watch events kept per resource type for resume; older versions get 410 (default: %(default)s)",
    )
    serve.add_argument(
        "--kubelet", action="store_true", help="also run the kubelet stand-in (runs bare pods)"
    )


def main(args: argparse.Namespace) -> int:
    if args.sim_command != "serve":
        print(f"mcosup sim: unknown action {args.sim_command!r}; use 'serve'", file=sys.stderr)
        return 2
    if args.kubelet and importlib.util.find_spec("mcosup.sim.kubelet") is None:
        print(
            "mcosup sim serve: --kubelet is not available yet in this version (no kubelet stand-in is "
            "built); run without --kubelet",
            file=sys.stderr,
        )
        return 2
    if args.crds is not None and not args.crds.is_dir():
        print(f"mcosup sim serve: --crds {args.crds} is not a directory of CRD manifests", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0


async def _serve(args: argparse.Namespace) -> int:
    from mcosup.sim.apiserver import Emulator
    from mcosup.sim.errors import ApiStatusError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Emulator(history_window=args.history_window, host=args.host, port=args.port) as emu:
        if args.crds is not None:
            for manifest in sorted(args.crds.glob("*.yaml")):
                for doc in yaml.safe_load_all(manifest.read_text()):
                    if not doc:
                        continue
                    try:
                        await emu.create_object(doc)
                    except ApiStatusError as exc:
                        print(f"mcosup sim serve: {manifest}: {exc.message}", file=sys.stderr)
                        return 1
        path = emu.write_kubeconfig(args.kubeconfig)
        print(f"emulator serving on {emu.url}; admin kubeconfig written to {path}", flush=True)
        kubelet_task: asyncio.Task[None] | None = None
        workdir = Path(tempfile.mkdtemp(prefix="mcosup-sim-kubelet-"))
        if args.kubelet:
            kubelet_task = asyncio.create_task(_run_kubelet(emu, workdir))
        await stop.wait()
        if kubelet_task is not None:
            kubelet_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await kubelet_task
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


async def _run_kubelet(emu: Any, workdir: Path) -> None:
    """The kubelet stand-in against this emulator: runs every pod, logs served by `pods/log`."""
    from mcosup.kube import client as kclient
    from mcosup.runtime.settings import KubeSettings
    from mcosup.sim.kubelet import Kubelet

    def credentials(ns: str, account: str, node: str | None, path: Path) -> Path:
        result: Path = emu.write_kubeconfig_for_service_account(path, ns, account, node)
        return result

    config = emu.write_kubeconfig(
        workdir / "kubelet.kubeconfig", user="system:node:sim", groups=("system:nodes",)
    )
    async with kclient.connect(KubeSettings(kubeconfig=str(config))) as kube:
        kubelet = Kubelet(kube, workdir / "pods", credentials=credentials, log_sink=emu.set_pod_log)
        await kubelet.run()
