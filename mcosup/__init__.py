"""mcosup: layered OS management for Kubernetes nodes through the MCO's API.

The folder tree is the architecture (import-linter enforces it, see pyproject.toml), from the bottom:
- ``mcosup.model``: the MCO's objects and rules, pure; shared by every process and the webhook.
- ``webhooks`` (top level): the admission verdicts, pure; imports only ``mcosup.model``.
- ``mcosup.runtime``: settings, logs, metrics, signal handling.
- ``mcosup.kube``: the only door to the API server (its ``credentials`` is the only importer of
  kubernetes_asyncio, and only for kubeconfig exec/auth-provider plugins).
- ``mcosup.control``: the controllers' machinery (queue, controller loop, clock, pool status writes).
- ``mcosup.http``: servers (probes, metrics, admission) and their certificates.
- ``mcosup.supervisor``, ``mcosup.builder``, ``mcosup.daemon``: the three processes, independent of
  each other. In each, a module named ``*plan`` decides (pure: facts in, steps out) and the module it
  is named after acts on the API server or the host: ``rolloutplan``/``rollout``,
  ``builderpodplan``/``optin``, ``buildplan``/``build``, the daemon's ``plan``/``agent``.
- ``mcosup.cli``: the ``mcosup`` command, ``mcosup status`` and ``mcosup demo``.
- ``mcosup.sim``: the API emulator, kubelet stand-in and fake hosts; imported by no product code
  except the ``demo`` and ``sim`` commands.
No module has import-time side effects.
"""

__version__ = "0.1.0"
