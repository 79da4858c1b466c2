"""The ostree host's tests: fixtures from :mod:`ostreekit`."""

from ostreekit import image_registry, ostree_hosts, pull_url

__all__ = ["image_registry", "ostree_hosts", "pull_url"]
