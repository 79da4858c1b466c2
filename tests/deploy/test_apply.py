"""`kubectl apply -k deploy/` against the API emulator: the install a user runs, end to end.

The emulator starts with the MCO's own CRDs installed (as on a cluster that runs the MCO), so applying
ours also proves they replace the MCO's cleanly. No supervisor runs here, which makes these tests the
"mcosup is down" case for the webhook's failure policies as well.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import DEPLOY, OBJECTS_BY_ID, object_id

from mcosup.model import names

NS = names.DEFAULT_NAMESPACE


async def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """Run kubectl without blocking the event loop the emulator serves on; (exit status, out, err)."""
    executable = shutil.which("kubectl")
    assert executable, "kubectl is required on PATH for the install tests (see README: setup)"
    process = await asyncio.create_subprocess_exec(
        executable,
        f"--kubeconfig={kubeconfig}",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(
        process.communicate(stdin.encode() if stdin is not None else None), timeout=90
    )
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def install(kubeconfig: Path) -> str:
    status, out, err = await kubectl(kubeconfig, "apply", "-k", str(DEPLOY))
    assert status == 0, f"kubectl apply -k deploy/ failed:\n{out}\n{err}"
    return out


async def test_apply_installs_every_object(admin_kubeconfig: Path) -> None:
    await install(admin_kubeconfig)

    status, out, err = await kubectl(admin_kubeconfig, "get", "-k", str(DEPLOY), "-o", "json")
    assert status == 0, err
    live = {object_id(o): o for o in json.loads(out)["items"]}
    assert set(live) == set(OBJECTS_BY_ID)

    # Our CRDs replaced the MCO's: the pool CRD now has mcosup's LayeringReady column.
    pools = live[f"CustomResourceDefinition/machineconfigpools.{names.GROUP}"]
    columns = [c["name"] for c in pools["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert "LayeringReady" in columns

    status, out, err = await kubectl(
        admin_kubeconfig, "get", "deployments,daemonsets,services,poddisruptionbudgets", "-n", NS
    )
    assert status == 0, err
    for name in ("deployment.apps/machine-config-supervisor", "daemonset.apps/machine-config-daemon"):
        assert name in out


async def test_apply_twice_is_harmless(admin_kubeconfig: Path) -> None:
    await install(admin_kubeconfig)
    again = await install(admin_kubeconfig)
    # kubectl re-sends a PodDisruptionBudget's selector (patch strategy "replace") and reports it
    # "configured" on every apply, on a real cluster too; everything else must be unchanged.
    changed = [
        line
        for line in again.splitlines()
        if not line.endswith(" unchanged") and "poddisruptionbudget" not in line
    ]
    assert changed == []


async def test_with_mcosup_down_only_machineconfig_writes_wait(
    admin_kubeconfig: Path, mco_fixtures: Path
) -> None:
    """failurePolicy per rule: nodes, pools and the build config stay writable; MachineConfigs wait."""
    await install(admin_kubeconfig)
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "worker-0", "annotations": {names.CURRENT_CONFIG: "rendered-worker-0"}},
    }
    status, _, err = await kubectl(admin_kubeconfig, "create", "-f", "-", stdin=json.dumps(node))
    assert status == 0, err

    # Node UPDATE (Ignore): the kubelet and the control plane are never blocked by mcosup.
    status, _, err = await kubectl(admin_kubeconfig, "label", "node", "worker-0", "example.com/rack=r1")
    assert status == 0, err

    # Pool opt-in (Ignore): spec.paused and the label still work while mcosup is down.
    pool = yaml.safe_load((mco_fixtures / "objects" / "worker.machineconfigpool.yaml").read_text())
    pool["metadata"]["labels"][names.LAYERING_ENABLED] = ""
    status, _, err = await kubectl(admin_kubeconfig, "apply", "-f", "-", stdin=json.dumps(pool))
    assert status == 0, err
    status, _, err = await kubectl(
        admin_kubeconfig, "patch", "mcp", "worker", "--type=merge", "-p", '{"spec":{"paused":true}}'
    )
    assert status == 0, err

    # The build config (Ignore): the supervisor re-validates it anyway.
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": names.BUILD_CONFIG_CM, "namespace": NS},
        "data": {names.FINAL_IMAGE_PULLSPEC_KEY: "registry.example.com/os:latest"},
    }
    status, _, err = await kubectl(admin_kubeconfig, "apply", "-f", "-", stdin=json.dumps(config_map))
    assert status == 0, err

    # MachineConfig (Fail): refused until the webhook answers, with the webhook named.
    machineconfig = yaml.safe_load((mco_fixtures / "objects" / "test-config.machineconfig.yaml").read_text())
    status, _, err = await kubectl(admin_kubeconfig, "apply", "-f", "-", stdin=json.dumps(machineconfig))
    assert status != 0
    assert "machineconfigs.mcosup.machineconfiguration.openshift.io" in err
    status, _, _ = await kubectl(admin_kubeconfig, "get", "mc", "test-config")
    assert status != 0


@pytest.mark.parametrize("kind", ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"])
async def test_rbac_objects_are_served(admin_kubeconfig: Path, kind: str) -> None:
    """The RBAC part of the install names its own failure if the API has no RBAC group."""
    await install(admin_kubeconfig)
    expected = sorted(i.split("/", 1)[1] for i in OBJECTS_BY_ID if i.startswith(kind + "/"))
    args = ["get", kind.lower() + "s", "-o", "name"]
    if kind.startswith("Role"):
        args += ["--all-namespaces"]  # the events Role lives in default
    status, out, err = await kubectl(admin_kubeconfig, *args)
    assert status == 0, err
    mcosup = sorted(line.split("/", 1)[1] for line in out.split() if "/mcosup:" in line)
    assert mcosup == expected


async def test_kubectl_get_machineosconfigs_and_builds_shows_the_mcos_printer_columns(
    admin_kubeconfig: Path, mco_fixtures: Path
) -> None:
    """What `oc get machineosbuilds` users expect: the columns of the MCO's CRDs, filled from status."""
    await install(admin_kubeconfig)
    build = "worker-0123456789abcdef"
    objects = [
        {
            "apiVersion": names.API_VERSION,
            "kind": names.MACHINEOSCONFIG_KIND,
            "metadata": {"name": "worker"},
            "spec": {
                "machineConfigPool": {"name": "worker"},
                "imageBuilder": {"imageBuilderType": "Job"},
                "renderedImagePushSecret": {"name": "push"},
                "renderedImagePushSpec": "registry.example.com/os/layered:latest",
            },
        },
        {
            "apiVersion": names.API_VERSION,
            "kind": names.MACHINEOSBUILD_KIND,
            "metadata": {"name": build},
            "spec": {
                "machineConfig": {"name": "rendered-worker-" + "3f2a9c1b" * 4},
                "machineOSConfig": {"name": "worker"},
                "renderedImagePushSpec": f"registry.example.com/os/layered:{build}",
            },
        },
    ]
    for obj in objects:
        status, _, err = await kubectl(admin_kubeconfig, "create", "-f", "-", stdin=json.dumps(obj))
        assert status == 0, err
    states = {"Prepared": "False", "Building": "False", "Succeeded": "True", "Interrupted": "False"}
    conditions = [
        {"type": t, "status": s, "reason": t, "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        for t, s in {**states, "Failed": "False"}.items()
    ]
    patch = json.dumps({"status": {"conditions": conditions, "buildStart": "2026-01-01T00:00:00Z"}})
    status, _, err = await kubectl(
        admin_kubeconfig,
        "patch",
        "machineosbuild",
        build,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    )
    assert status == 0, err

    status, out, err = await kubectl(admin_kubeconfig, "get", "machineosconfigs,machineosbuilds")
    assert status == 0, err
    tables = [block.splitlines() for block in out.strip().split("\n\n")]
    expected = {}
    for plural in ("machineosconfigs", "machineosbuilds"):
        crd = yaml.safe_load((mco_fixtures / "crds" / f"{plural}.crd.yaml").read_text())
        columns = crd["spec"]["versions"][0].get("additionalPrinterColumns") or [{"name": "Age"}]
        expected[plural] = ["NAME", *(c["name"].upper() for c in columns)]
    assert [t[0].split() for t in tables] == [expected["machineosconfigs"], expected["machineosbuilds"]]
    mosc_row, mosb_row = tables[0][1].split(), tables[1][1].split()
    assert mosc_row[0] == f"machineosconfig.{names.GROUP}/worker"
    assert mosb_row[:6] == [f"machineosbuild.{names.GROUP}/{build}", *states.values(), "False"]
