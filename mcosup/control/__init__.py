"""Generic controller machinery: work queue, backoff, controller runner, clock.

Knows nothing about MachineConfigs or the API server's wire format: it maps keys to reconcile calls.
"""
