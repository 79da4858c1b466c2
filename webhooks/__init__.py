"""Pure policy for mcosup: the contract's wire vocabulary and every admission verdict.

This package is pure: no I/O, no HTTP server, no Kubernetes client, and no import of ``mcosup``
(an import-linter contract enforces it). Cluster facts a verdict needs are passed in as plain data.
``mcosup`` builds on it: the supervisor's webhook server and the render controller call into it, so a
MachineConfig is judged by the same rules at admission time and at render time.
"""
