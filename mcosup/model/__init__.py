"""The MCO's objects and rules, pure: what every process and the admission webhook agree on.

- ``names``: every wire name of the contract (labels, annotations, ConfigMaps, conditions).
- ``objects``: typed accessors for the objects' metadata (labels, annotations, rendered config).
- ``machineosconfig``: the opt-in (label or MachineOSConfig) and each pool's build settings.
- ``selectors``: Kubernetes label-selector matching, the API server's semantics.
- ``ignition``: reading Ignition: spec versions, ``data:`` URLs and paths, as Ignition itself does.
- ``machineconfig``: which MachineConfigs mcosup can deliver (the webhook admits exactly those; the
  builder and daemon re-check), with ``plainfiles``, its fast path for batches of plain files.
- ``hostconfig``: what a rendered config puts on a host (files, units, drop-ins, core's keys and
  password hash, kernel arguments): the one reader the builder and the legacy daemon both lay out.
- ``node``: the node protocol: what the supervisor asks of a node and what its daemon reports.
- ``rendering``: the merge of a pool's MachineConfigs into its rendered config.
- ``buildconfig``: validation of the on-cluster build configuration.
- ``containerfile``: reading a pool's custom Containerfile text (no ``FROM`` may replace the base).
- ``conditions``: status conditions as Kubernetes conventions want them.
- ``imageref``: container image references.

No I/O, no clock, no asyncio, no API client (an import-linter contract enforces it), so every rule
here is tested as a plain function and gives one answer wherever it is asked.
"""
