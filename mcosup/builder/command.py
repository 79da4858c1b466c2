"""``mcosup builder``: the Machine OS Builder process (contract section 4).

Flags and settings; the composition root is ``mcosup.builder.run``. Runs until SIGTERM.

Settings (environment):

- ``MCOSUP_NAMESPACE``: namespace of mcosup and of the build objects.
- ``MCOSUP_BUILDAH_IMAGE``: image of the build Pods (any image with buildah, sh, cat and tar).
- ``MCOSUP_BUILD_TLS_VERIFY``: ``false`` only for a plain-HTTP or self-signed test registry.
- ``MCOSUP_BUILD_CPU_REQUEST``, ``MCOSUP_BUILD_MEMORY_REQUEST``: resource requests of the build Pods.
- ``MCOSUP_BUILD_RETRIES`` (3): the build Job's ``backoffLimit``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
from collections.abc import Iterator

from mcosup.runtime.settings import (
    BuilderSettings,
    KubeSettings,
)

HELP = "the Machine OS Builder: builds one OS image per opted-in pool"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig path (default: $KUBECONFIG, else in-cluster config)")
    parser.add_argument(
        "--namespace",
        help="namespace of mcosup (default: $MCOSUP_NAMESPACE or openshift-machine-config-operator)",
    )


def main(args: argparse.Namespace) -> int:
    settings = BuilderSettings.from_env(os.environ, args.namespace)
    kube_settings = KubeSettings.from_env(os.environ, kubeconfig=args.kubeconfig)
    # The client stack loads only when the builder runs, not for every `mcosup` command's --help.
    with _no_collections():
        from mcosup.builder.run import run
        from mcosup.runtime.lifecycle import run_until_signalled

    return run_until_signalled(run(settings, kube_settings))


@contextlib.contextmanager
def _no_collections() -> Iterator[None]:
    """No cyclic garbage collection inside this block; what it leaves alive is kept out of later ones.

    Imports allocate much and free almost nothing, so the collections they trigger find nothing to free
    (about 5% of the builder pod's start); the modules, classes and functions they made live as long as
    the process, so later collections need not look at them again (``gc.freeze``).
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
