"""mcosup: layered OS management for Kubernetes nodes through the MCO's API.

Layers (enforced by import-linter, see pyproject.toml):
- ``webhooks``: pure policy and the contract's wire names; imports nothing of mcosup.
- ``mcosup.kube``: the only door to the API server (its ``clientconfig`` is the only importer of
  kubernetes_asyncio, and only for kubeconfig exec/auth-provider plugins).
- ``mcosup.control``: generic queue/controller machinery, no knowledge of MCO objects.
- ``mcosup.supervisor``, ``mcosup.builder``, ``mcosup.daemon``: the three processes.
- ``mcosup.http``: servers (probes, metrics, admission).
- ``mcosup.sim``: the API emulator, kubelet stand-in and fake host; imported by no product code
  except the ``demo`` and ``sim`` commands.
No module has import-time side effects.
"""

__version__ = "0.1.0"
