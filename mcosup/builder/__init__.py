"""The Machine OS Builder (`mcosup builder`, contract section 4): the bare pod ``machine-os-builder``,
spawned by the supervisor only while some pool is opted in.

Layers, from pure to I/O:

- **Decide (pure, no I/O):** :mod:`~mcosup.builder.buildplan`: the build identity, the target tag, the
  build context (the rendered config as a root filesystem tree, judged first by the webhook's own
  validation), the Containerfile, the ephemeral ConfigMaps and the build Pod; and ``decide``, the
  pool's next build step from the facts the reconciler reads.
- **Act:** :mod:`~mcosup.builder.build`, the reconciler (one key per opted-in pool), executing each
  step ``decide`` returns (reuse, create, follow, record, retry, supersede), and
  :mod:`~mcosup.builder.manifests`, the registry reuse check.
- **Wire:** :mod:`~mcosup.builder.run` is the composition root; ``command`` parses flags and settings
  (:class:`mcosup.runtime.settings.BuilderSettings`). Nothing here imports :mod:`mcosup.sim`.
"""
