"""What every mcosup process runs on: settings from the environment, structured logs, Prometheus
metrics and signal handling. Knows nothing of the MCO's objects or the API server."""
