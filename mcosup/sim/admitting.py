"""Where the emulator's writes call validating admission webhooks.

Builds the request's :class:`~mcosup.sim.admission.Attributes` (operation, resource, user, objects,
options, dry-run) and calls the webhooks of the stored ValidatingWebhookConfigurations through
:func:`mcosup.sim.admission.call_webhooks`; their warnings join the request's. Matching and calling
are in :mod:`mcosup.sim.admission`.
"""

from __future__ import annotations

from typing import Any

from mcosup.sim import admission
from mcosup.sim.admission import Attributes
from mcosup.sim.state import EmulatorState
from mcosup.sim.wire import Ctx, Target


class Admitting(EmulatorState):
    """The call into admission that creates, updates, deletes and evictions make."""

    async def _admit(
        self,
        ctx: Ctx,
        t: Target,
        operation: str,
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None,
        name: str,
        options: dict[str, Any],
        kind: dict[str, str] | None = None,
    ) -> None:
        rt = t.rt
        if rt.builtin and rt.kind in ("ValidatingWebhookConfiguration",):
            return  # the apiserver never calls webhooks about webhook configurations
        configs = list(self.store.items(("admissionregistration.k8s.io", "validatingwebhookconfigurations")))
        if not configs:
            return
        namespace = t.namespace or ""
        ns_obj = self.store.get(("", "namespaces"), None, namespace) if namespace else None
        ns_labels = (ns_obj or {}).get("metadata", {}).get("labels") or {}
        attrs = Attributes(
            operation=operation,
            group=rt.group,
            version=t.version,
            resource=rt.plural,
            subresource=t.subresource or "",
            kind=kind or {"group": rt.group, "version": t.version, "kind": rt.kind},
            name=name,
            namespace=namespace,
            obj=obj,
            old=old,
            dry_run=ctx.dry_run,
            options=options,
            user=ctx.user,
        )
        ctx.warnings.extend(await admission.call_webhooks(self._caller, configs, attrs, ns_labels))
