"""Whether a node's turn needs a cordon and drain, by the node disruption policy (contract 12.2).

The node controller (:mod:`mcosup.supervisor.rollout`) asks :meth:`DrainCheck.skip_drain` before it
cordons a node. The answer comes from the same pure classification the daemon applies
(:func:`mcosup.model.disruption.classify`): the node's current rendered config against the pool's, under
the ``node-disruption-policy`` ConfigMap. A change the daemon applies without a reboot and without a
``Drain`` action is given to the node with neither cordon nor drain, as the MCO's daemon skips its drain
(and with it the cordon) for such a change; the node still counts against ``maxUnavailable`` until its
daemon reports it current. Whenever the answer is uncertain (the node is not settled on a config, a
rendered config is missing or invalid, the policy is invalid) the node is drained as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mcosup.kube.cache import Informer
from mcosup.model import disruption, names
from mcosup.model.hostconfig import ConfigError, HostConfig, parse_machineconfig
from mcosup.model.node import NodeView, Target
from mcosup.model.objects import Obj

log = logging.getLogger(__name__)

#: Called with the ConfigMap and the message when the policy cannot be read (once per version).
OnInvalid = Callable[[Obj, str], None]


def _parsed(mc: Obj) -> HostConfig | None:
    try:
        return parse_machineconfig(mc)
    except ConfigError:
        return None  # the render controller and the daemon report it


class DrainCheck:
    def __init__(
        self, *, machineconfigs: Informer, configmaps: Informer, namespace: str, on_invalid: OnInvalid
    ):
        self._configs = machineconfigs.derive(_parsed)
        self._configmaps = configmaps
        self._policies = configmaps.derive(disruption.policy_of)
        self._namespace = namespace
        self._on_invalid = on_invalid
        self._reported: str | None = None

    def skip_drain(self, view: NodeView, target: Target) -> str | None:
        """Why ``view`` can take ``target`` without cordon and drain, or None when it must be drained."""
        if not view.converged or view.current_config is None or view.mode is None:
            return None
        old = self._configs.get(view.current_config)
        new = self._configs.get(target.config)
        if old is None or new is None:
            return None
        change = disruption.classify(
            old,
            new,
            self._policy(),
            old_mode=view.mode,
            new_mode=target.mode,
            old_image=view.current_image,
            new_image=target.image,
        )
        if change.drain:
            return None
        return (
            f"{names.NODE_DISRUPTION_POLICY_CM} applies {target.config} without a reboot: {change.describe()}"
        )

    def _policy(self) -> disruption.Policy | None:
        cm = self._configmaps.get(names.NODE_DISRUPTION_POLICY_CM, self._namespace)
        if cm is None:
            return disruption.DEFAULT_POLICY
        policy, error = self._policies.of(cm)
        version = str((cm.get("metadata") or {}).get("resourceVersion", ""))
        if error is not None and version != self._reported:
            self._reported = version
            log.warning("%s", error)
            self._on_invalid(cm, error)
        return policy
