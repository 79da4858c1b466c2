"""A patch that races with another write while it is being admitted is applied again to the new version
(as the real apiserver's GuaranteedUpdate does), unless the patch itself names a resourceVersion.

Found by the story chaos runner (seed 2): the daemon's merge patch of its own report met the
supervisor's write of the same Node, the emulator answered 409, and the daemon went Degraded for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube.resources import CONFIGMAPS
from mcosup.runtime.settings import KubeSettings

NS = "default"


async def racing(emulator: Any, admin_kubeconfig: Path, pin: bool) -> dict[str, Any]:
    """Patch ConfigMap ``raced`` (naming its resourceVersion when ``pin``) while, during the patch's
    admission, another client's write of the same object lands first."""
    async with kclient.connect(KubeSettings(kubeconfig=str(admin_kubeconfig))) as kube:
        made = await kube.create(CONFIGMAPS, {"metadata": {"name": "raced"}, "data": {}}, namespace=NS)
        admit = emulator._admit
        raced = False

        async def admit_after_another_write(ctx: Any, t: Any, operation: str, *args: Any, **kw: Any) -> None:
            nonlocal raced
            if not raced and t.rt.plural == "configmaps" and operation == "UPDATE":
                raced = True
                await kube.patch(CONFIGMAPS, "raced", {"data": {"other": "first"}}, namespace=NS)
            await admit(ctx, t, operation, *args, **kw)

        patch: dict[str, Any] = {"data": {"mine": "second"}}
        if pin:
            patch["metadata"] = {"resourceVersion": made["metadata"]["resourceVersion"]}
        emulator._admit = admit_after_another_write
        try:
            return await kube.patch(CONFIGMAPS, "raced", patch, namespace=NS)
        finally:
            emulator._admit = admit


async def test_a_merge_patch_racing_another_write_is_applied_to_the_new_version(
    emulator: Any, admin_kubeconfig: Path
) -> None:
    result = await racing(emulator, admin_kubeconfig, pin=False)
    assert result["data"] == {"other": "first", "mine": "second"}


async def test_a_patch_naming_a_resource_version_still_conflicts_when_raced(
    emulator: Any, admin_kubeconfig: Path
) -> None:
    with pytest.raises(errors.Conflict):
        await racing(emulator, admin_kubeconfig, pin=True)
