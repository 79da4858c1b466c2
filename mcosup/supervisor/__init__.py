"""The supervisor (`mcosup supervisor`, contract sections 2, 3, 5, 7 and 8): one Deployment, 1..n replicas.

Every replica keeps the caches warm and serves probes, metrics and the admission webhook; the replica
holding the Lease (:mod:`~mcosup.supervisor.leader`) runs the controllers. Layers, from pure to I/O:

- **Decide (pure, no I/O):** :mod:`~mcosup.supervisor.rolloutplan` (which nodes get which target, and the
  pool status), :mod:`~mcosup.supervisor.optinplan` (the MachineOSConfigs made from pools' labels, and
  each opted-in pool's build-settings problems; the opt-in rule itself is
  :mod:`mcosup.model.machineosconfig`), :mod:`~mcosup.supervisor.builderpodplan` (the builder pod's
  manifest and restart policy), the choice of pods in :mod:`~mcosup.supervisor.drain`, and for render
  :mod:`mcosup.model.rendering`; the certificate plan is :mod:`mcosup.http.certs`.
- **Act (controllers over the caches):** :mod:`~mcosup.supervisor.render` (rendered configs),
  :mod:`~mcosup.supervisor.optin` (managed MachineOSConfigs, layering readiness, the builder pod,
  opt-out cleanup), :mod:`~mcosup.supervisor.rollout` (cordon, drain, target patches, pool status),
  :mod:`~mcosup.supervisor.webhook` and :mod:`~mcosup.supervisor.webhooktls` (the webhook and its
  self-managed certificates), :mod:`~mcosup.supervisor.buildmetrics` (builds on ``/metrics``).
- **Wire:** :mod:`~mcosup.supervisor.run` is the composition root; ``command`` parses flags and
  settings (:mod:`mcosup.runtime.settings`). Nothing here imports :mod:`mcosup.sim`.
"""
