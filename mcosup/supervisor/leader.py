"""Leader election on a ``coordination.k8s.io/v1`` Lease.

Every replica runs this; the one holding the Lease runs the controllers, the others stand by (serving
HTTP and the webhook). Expiry is judged by when *we* last saw the Lease record change, not by comparing
its renewTime with our clock (client-go's rule: clocks of replicas on different hosts disagree).
A leader that cannot renew within ``renew_deadline`` stops leading before its Lease can expire, so two
leaders never act at once; on a clean shutdown it releases the Lease so the standby takes over at once.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mcosup.kube import errors
from mcosup.kube.client import Kube
from mcosup.kube.resources import LEASES
from mcosup.model.objects import Obj
from mcosup.runtime.settings import LeaseSettings

log = logging.getLogger(__name__)


def _micro_time() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, kube: Kube, *, namespace: str, identity: str, settings: LeaseSettings | None = None):
        self.kube = kube
        self.namespace = namespace
        self.identity = identity
        self.settings = settings or LeaseSettings()
        #: Set once we know who leads (ourselves or another): readiness waits on it.
        self.known = asyncio.Event()
        self.leading = False
        self.holder: str = ""
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Forever: acquire, then run ``lead()`` while we hold the Lease; cancel it when we lose it."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                if await self._try_acquire_or_renew(loop.time()):
                    await self._lead(lead)
                await asyncio.sleep(self.settings.retry_period)
        finally:
            # _lead has already set leading=False on its way out; whether we still hold the Lease is
            # what the last write we made says.
            if self.holder == self.identity:
                await asyncio.shield(self._release())

    async def _lead(self, lead: Callable[[], Awaitable[None]]) -> None:
        log.info("became leader", extra={"fields": {"lease": self.settings.name, "identity": self.identity}})
        self.leading = True
        loop = asyncio.get_running_loop()
        work = asyncio.ensure_future(lead())
        last_renew = loop.time()
        try:
            while not work.done():
                done, _ = await asyncio.wait({work}, timeout=self.settings.retry_period)
                if done:
                    break
                if await self._try_acquire_or_renew(loop.time()):
                    last_renew = loop.time()
                elif loop.time() - last_renew >= self.settings.renew_deadline or (
                    self.holder and self.holder != self.identity
                ):
                    log.warning("lost leadership", extra={"fields": {"holder": self.holder or "(unknown)"}})
                    break
        finally:
            self.leading = False
            if not work.done():
                work.cancel()
            await asyncio.gather(work, return_exceptions=True)
        if work.done() and not work.cancelled() and work.exception() is not None:
            raise work.exception()  # type: ignore[misc]

    async def _try_acquire_or_renew(self, now: float) -> bool:
        try:
            lease = await self.kube.get(LEASES, self.settings.name, namespace=self.namespace)
        except errors.NotFound:
            return await self._write(None, now)
        except errors.ApiError as exc:
            log.warning("cannot read lease: %s", exc)
            return False
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime", "")))
        if record != self._observed:
            self._observed, self._observed_at = record, now
        self.holder = holder
        self.known.set()
        duration = float(spec.get("leaseDurationSeconds") or self.settings.lease_duration)
        if holder and holder != self.identity and now - self._observed_at < duration:
            return False
        return await self._write(lease, now)

    async def _write(self, lease: Obj | None, now: float) -> bool:
        stamp = _micro_time()
        spec: dict[str, Any] = dict((lease or {}).get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = stamp
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if lease else 0)
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=int(self.settings.lease_duration),
            renewTime=stamp,
        )
        body: Obj = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.settings.name, "namespace": self.namespace},
            "spec": spec,
        }
        try:
            if lease is None:
                written = await self.kube.create(LEASES, body, namespace=self.namespace)
            else:
                body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
                written = await self.kube.replace(LEASES, self.settings.name, body, namespace=self.namespace)
        except (errors.Conflict, errors.AlreadyExists):
            return False  # someone else wrote first; look again next period
        except errors.ApiError as exc:
            log.warning("cannot write lease: %s", exc)
            return False
        self.holder = self.identity
        self._observed = (self.identity, str(written["spec"].get("renewTime", "")))
        self._observed_at = now
        self.known.set()
        return True

    async def _release(self) -> None:
        """Hand the Lease back so a standby need not wait for it to expire."""
        try:
            async with asyncio.timeout(5):
                lease = await self.kube.get(LEASES, self.settings.name, namespace=self.namespace)
                if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                    return
                lease["spec"]["holderIdentity"] = ""
                lease["spec"]["leaseDurationSeconds"] = 1
                await self.kube.replace(LEASES, self.settings.name, lease, namespace=self.namespace)
                log.info("released leadership")
        except (errors.ApiError, TimeoutError) as exc:
            log.warning("could not release the lease (the standby takes over when it expires): %s", exc)
