"""Helpers of the daemon suites."""

from __future__ import annotations

from aiohttp import web


class Registry:
    """The slice of the registry API the fake rebase uses: HEAD /v2/<repo>/manifests/<ref>."""

    def __init__(self) -> None:
        self.manifests: set[tuple[str, str]] = set()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        key = (request.match_info["repo"], request.match_info["ref"])
        if key not in self.manifests:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        return web.Response(headers={"Docker-Content-Digest": key[1]})

    def push(self, image: str) -> None:
        """Make ``host/repo@digest`` exist."""
        _, _, rest = image.partition("/")
        repo, _, digest = rest.partition("@")
        self.manifests.add((repo, digest))
