"""The only door to the Kubernetes API server.

It offers: client configuration (``clientconfig``: kubeconfig or in-cluster, giving the server, TLS
and credentials, which ``credentials`` turns into SSL contexts and ``Authorization`` headers), a facade
for exactly the calls mcosup makes with explicit patch content types and a field manager, one error
taxonomy and one retry policy, list-then-watch, and informer-style caches.
Objects travel as plain dicts (parsed with orjson), never as generated model classes: cheaper in
memory and CPU, and they round-trip unknown fields.

``kubernetes_asyncio`` is imported only by ``credentials``, and only to run the ``exec`` and
``auth-provider`` plugins of a kubeconfig user (import-linter enforces it): its package import costs a
fifth of a second, which every short-lived process (the builder pod, ``mcosup status``) would pay.
"""
