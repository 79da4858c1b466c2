"""The only door to the Kubernetes API server.

Only this package imports ``kubernetes_asyncio`` (import-linter enforces it). It offers: client
construction (kubeconfig or in-cluster), a facade for exactly the calls mcosup makes with explicit
patch content types and a field manager, one error taxonomy and one retry policy, list-then-watch,
and informer-style caches. Objects travel as plain dicts (parsed with orjson), never as generated
model classes: cheaper in memory and CPU, and they round-trip unknown fields.
"""
