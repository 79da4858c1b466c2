"""The admission webhook's verdicts, pure: an AdmissionReview and the cluster's facts in, a verdict out.

- ``review``: parsing AdmissionReview bodies and writing the answers.
- ``facts``: the cluster facts a verdict needs (pools, MachineConfigs, Secret names), as plain data.
- ``policy``: every verdict of the contract's section 7.

No I/O, no HTTP server, no Kubernetes client (an import-linter contract enforces it); of mcosup it
imports only the pure :mod:`mcosup.model`, so a MachineConfig is judged by the same rules at admission
time as at render, build and apply time.
"""
