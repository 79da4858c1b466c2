"""Every Prometheus metric mcosup exports, on one injected registry (no global default registry).

The composition root builds one ``Metrics`` and hands it to the loops that count; tests build their own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WebhookMetrics:
    """The admission server's metrics (on their own for tests and benches that run only the server)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.webhook_requests = Counter(
            "mcosup_webhook_requests",
            "Admission reviews by kind and result",
            ["kind", "result"],
            registry=registry,
        )
        self.webhook_latency = Histogram(
            "mcosup_webhook_latency_seconds",
            "Admission review latency",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )


class Metrics(WebhookMetrics):
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        super().__init__(r)
        self.reconciles = Counter(
            "mcosup_reconciles", "Reconciles by controller and result", ["controller", "result"], registry=r
        )
        self.queue_depth = Gauge(
            "mcosup_queue_depth", "Keys waiting in a work queue", ["controller"], registry=r
        )
        self.watch_restarts = Counter(
            "mcosup_watch_restarts",
            "Watch streams reopened, by resource and cause",
            ["resource", "cause"],
            registry=r,
        )
        self.watch_events = Counter(
            "mcosup_watch_events", "Watch events applied to a cache, by resource", ["resource"], registry=r
        )
        self.opted_in_pools = Gauge(
            "mcosup_opted_in_pools", "Pools opted in to layering (label or MachineOSConfig)", registry=r
        )
        self.builder_restarts = Counter(
            "mcosup_builder_restarts", "Builder pods recreated after they exited or vanished", registry=r
        )
        self.builds = Counter("mcosup_builds", "Finished image builds by result", ["result"], registry=r)
        self.build_duration = Histogram(
            "mcosup_build_duration_seconds",
            "Image build duration",
            registry=r,
            buckets=(10, 30, 60, 120, 300, 600, 1200, 3600),
        )
        self.nodes = Gauge("mcosup_nodes", "Nodes by pool and daemon state", ["pool", "state"], registry=r)
