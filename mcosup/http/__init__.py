"""HTTP servers of the supervisor: probes and metrics (plain), admission webhook (HTTPS)."""
