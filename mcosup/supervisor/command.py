"""``mcosup supervisor``: parse flags and environment, run the composition root until SIGTERM."""

from __future__ import annotations

import argparse
import os

from mcosup.runtime.settings import KubeSettings, SupervisorSettings

HELP = "the supervisor: watch loops, render, opt-in, builder pod, rollout, webhook, probes and metrics"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig path (default: $KUBECONFIG, else in-cluster config)")
    parser.add_argument(
        "--namespace",
        help="namespace of mcosup (default: $MCOSUP_NAMESPACE or openshift-machine-config-operator)",
    )
    parser.add_argument(
        "--http-port", type=int, help="probes and metrics port (default: $MCOSUP_HTTP_PORT or 8080)"
    )
    parser.add_argument("--image", help="image of the builder pod (default: $MCOSUP_IMAGE)")
    parser.add_argument("--identity", help="name in the leader Lease (default: $POD_NAME or $HOSTNAME)")


def main(args: argparse.Namespace) -> int:
    from mcosup.runtime.lifecycle import run_until_signalled
    from mcosup.runtime.settings import RolloutSettings
    from mcosup.supervisor.run import run

    settings = SupervisorSettings.from_env(
        os.environ,
        namespace=args.namespace,
        http_port=args.http_port,
        image=args.image,
        identity=args.identity,
    )
    kube_settings = KubeSettings.from_env(os.environ, kubeconfig=args.kubeconfig)
    rollout_settings = RolloutSettings.from_env(os.environ)
    return run_until_signalled(run(settings, kube_settings, rollout_settings=rollout_settings))
