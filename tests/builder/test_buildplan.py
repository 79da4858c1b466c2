"""The build plan: identity, tag, root filesystem tree, Containerfile, ConfigMaps, Secrets, build Pod."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import io
import json
import os
import tarfile
from typing import Any

import pytest

from mcosup.builder import buildplan as bp
from mcosup.model import names, rendering

A_INSTALL = "[Unit]\n[Install]\nWantedBy=multi-user.target graphical.target\nRequiredBy=b.target\n"
ETCD_UNIT = "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"


def spec_with(
    files: list[dict[str, Any]] | None = None, units: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    mc = {
        "metadata": {"name": "00-test"},
        "spec": {
            "config": {
                "ignition": {"version": "3.2.0"},
                "storage": {"files": files or []},
                "systemd": {"units": units or []},
            }
        },
    }
    return rendering.render("worker", [mc]).spec


def inputs(**changes: Any) -> bp.BuildInputs:
    base = bp.BuildInputs(
        pool="worker",
        rendered_name="rendered-worker-0123",
        rendered_spec=spec_with(),
        base_image="registry.example.com/os@sha256:" + "a" * 64,
        custom_containerfile="",
        pullspec="registry.example.com:5000/org/os-image:latest",
    )
    return dataclasses.replace(base, **changes)


IDENTITY_CHANGES = [
    {"rendered_spec": spec_with(files=[{"path": "/etc/x", "contents": {"source": "data:,x"}}])},
    {"base_image": "registry.example.com/os:other"},
    {"custom_containerfile": "RUN true"},
    {"pullspec": "registry.example.com:5000/org/other:latest"},
]


@pytest.mark.parametrize("change", IDENTITY_CHANGES, ids=lambda c: next(iter(c)))
def test_identity_covers_each_input(change: dict[str, Any]) -> None:
    assert bp.build_identity(inputs(**change)) != bp.build_identity(inputs())


def test_identity_ignores_what_it_does_not_cover() -> None:
    a = bp.build_identity(inputs())
    assert a == bp.build_identity(inputs(rendered_name="rendered-worker-other"))
    assert len(a) == 64 and int(a, 16) >= 0


PULLSPECS = [
    (
        "registry.example.com:5000/org/os-image:latest",
        ("registry.example.com:5000/org/os-image", "latest", None),
    ),
    ("registry.example.com:5000/org/os-image", ("registry.example.com:5000/org/os-image", None, None)),
    ("127.0.0.1:5000/os@sha256:" + "b" * 64, ("127.0.0.1:5000/os", None, "sha256:" + "b" * 64)),
    ("quay.io/org/os:v1@sha256:" + "c" * 64, ("quay.io/org/os", "v1", "sha256:" + "c" * 64)),
    ("os", ("os", None, None)),
]


@pytest.mark.parametrize(("pullspec", "expected"), PULLSPECS)
def test_split_pullspec(pullspec: str, expected: tuple[str, str | None, str | None]) -> None:
    assert bp.split_pullspec(pullspec) == expected


@pytest.mark.parametrize("bad", ["", "quay.io/org/", "quay.io/Org/os", "quay.io/os@sha256:abc", "a b"])
def test_split_pullspec_refuses(bad: str) -> None:
    with pytest.raises(ValueError, match=r"image reference|digest"):
        bp.split_pullspec(bad)


def test_target_replaces_user_tag_and_record_is_by_digest() -> None:
    identity = "0123456789abcdef" + "f" * 48
    assert (
        bp.target_image("r.io:5000/org/os:latest", "worker", identity)
        == "r.io:5000/org/os:worker-0123456789abcdef"
    )
    digest = "sha256:" + "d" * 64
    assert bp.digested_pullspec("r.io:5000/org/os:latest", digest) == "r.io:5000/org/os@" + digest
    with pytest.raises(ValueError):
        bp.digested_pullspec("r.io/os", "sha256:short")


def tree(entries: list[bp.Entry]) -> dict[str, tuple[int, bytes | str]]:
    return {e.path: (e.mode, e.link if e.link is not None else e.data) for e in entries}


CONTEXTS: list[tuple[str, dict[str, Any], dict[str, tuple[int, bytes | str]]]] = [
    (
        "files with modes, url-encoded, base64 and gzip data",
        {
            "files": [
                {"path": "/etc/a.conf", "mode": 0o600, "contents": {"source": "data:,a%3D1%0A"}},
                {
                    "path": "/etc/b.bin",
                    "contents": {"source": "data:;base64," + base64.b64encode(b"\x00b").decode()},
                },
                {
                    "path": "/usr/lib/z",
                    "mode": 0o755,
                    "contents": {
                        "source": "data:;base64," + base64.b64encode(gzip.compress(b"#!/bin/sh\n")).decode(),
                        "compression": "gzip",
                    },
                },
            ]
        },
        {
            "/etc/a.conf": (0o600, b"a=1\n"),
            "/etc/b.bin": (0o644, b"\x00b"),
            "/usr/lib/z": (0o755, b"#!/bin/sh\n"),
        },
    ),
    (
        "enabled unit linked into its WantedBy and RequiredBy targets",
        {
            "units": [
                {
                    "name": "a.service",
                    "enabled": True,
                    "contents": A_INSTALL,
                }
            ]
        },
        {
            "/etc/systemd/system/a.service": (0o644, A_INSTALL.encode()),
            "/etc/systemd/system/b.target.requires/a.service": (0o777, "/etc/systemd/system/a.service"),
            "/etc/systemd/system/graphical.target.wants/a.service": (0o777, "/etc/systemd/system/a.service"),
            "/etc/systemd/system/multi-user.target.wants/a.service": (0o777, "/etc/systemd/system/a.service"),
        },
    ),
    (
        "no [Install]: static, not linked (as systemctl enable); disabled: not linked; masked: /dev/null",
        {
            "units": [
                {"name": "a.service", "enabled": True, "contents": "[Service]\nExecStart=/bin/true\n"},
                {"name": "b.service", "enabled": False, "contents": ETCD_UNIT},
                {"name": "c.service", "mask": True},
            ]
        },
        {
            "/etc/systemd/system/a.service": (0o644, b"[Service]\nExecStart=/bin/true\n"),
            "/etc/systemd/system/b.service": (0o644, ETCD_UNIT.encode()),
            "/etc/systemd/system/c.service": (0o777, "/dev/null"),
        },
    ),
    (
        "drop-ins of a base-image unit; enabling it links the /usr/lib unit",
        {
            "units": [
                {
                    "name": "docker.service",
                    "enabled": True,
                    "dropins": [{"name": "10-opts.conf", "contents": "[Service]\n"}],
                }
            ]
        },
        {
            "/etc/systemd/system/docker.service.d/10-opts.conf": (0o644, b"[Service]\n"),
            "/etc/systemd/system/multi-user.target.wants/docker.service": (
                0o777,
                "/usr/lib/systemd/system/docker.service",
            ),
        },
    ),
]


@pytest.mark.parametrize(("case", "config", "expected"), CONTEXTS, ids=[c[0] for c in CONTEXTS])
def test_build_context(
    case: str, config: dict[str, Any], expected: dict[str, tuple[int, bytes | str]]
) -> None:
    spec = spec_with(files=config.get("files"), units=config.get("units"))
    assert tree(bp.build_context("rendered-worker-1", spec)) == expected


@pytest.mark.parametrize(
    "path", ["/var/lib/x", "/home/core/.bashrc", "/root/x", "/run/x", "/tmp/x", "/usr/local/bin/x"]
)
def test_build_context_refuses_undeliverable_paths(path: str) -> None:
    spec = spec_with(
        files=[
            {"path": "/etc/ok", "contents": {"source": "data:,"}},
            {"path": path, "contents": {"source": "data:,"}},
        ]
    )
    with pytest.raises(bp.BuildError, match=f"rendered config rendered-worker-1: file {path} is under"):
        bp.build_context("rendered-worker-1", spec)


def test_build_context_refuses_file_where_a_directory_is_needed() -> None:
    spec = spec_with(
        files=[
            {"path": "/etc/a", "contents": {"source": "data:,"}},
            {"path": "/etc/a/b", "contents": {"source": "data:,"}},
        ]
    )
    with pytest.raises(bp.BuildError, match="/etc/a is a file but /etc/a/b needs it to be a directory"):
        bp.build_context("r", spec)


def test_containerfile() -> None:
    text = bp.containerfile(inputs(custom_containerfile="RUN echo hi\n"))
    assert text.splitlines() == [
        "FROM registry.example.com/os@sha256:" + "a" * 64,
        "COPY rootfs/ /",
        f'LABEL "{names.RENDERED_CONFIG_LABEL}"="rendered-worker-0123" "{names.POOL_LABEL}"="worker"',
        "",
        "# custom Containerfile of pool worker",
        "RUN echo hi",
    ]
    assert "custom" not in bp.containerfile(inputs())


def untar(archive_name: str, archive: bytes) -> dict[str, tarfile.TarInfo]:
    raw = gzip.decompress(archive) if archive_name.endswith(".gz") else archive
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_context_tar_is_reproducible_and_keeps_modes_and_links() -> None:
    spec = spec_with(
        files=[{"path": "/etc/deep/dir/f", "mode": 0o640, "contents": {"source": "data:,x"}}],
        units=[{"name": "a.service", "enabled": True, "contents": ETCD_UNIT}],
    )
    plan = bp.plan(inputs(rendered_spec=spec))
    name, archive = plan.archive
    assert name == "context.tar"
    assert archive == bp.plan(inputs(rendered_spec=spec)).archive[1]
    members = untar(name, archive)
    assert members["rootfs/etc/deep/dir/f"].mode == 0o640
    assert members["rootfs/etc/deep"].isdir() and members["rootfs/etc/deep"].mode == 0o755
    link = members["rootfs/etc/systemd/system/multi-user.target.wants/a.service"]
    assert link.issym() and link.linkname == "/etc/systemd/system/a.service"
    assert all(m.uid == 0 and m.mtime == 0 for m in members.values())


def big_spec(n_files: int, size: int) -> dict[str, Any]:
    files = [
        {
            "path": f"/etc/big/{i}",
            "contents": {"source": "data:;base64," + base64.b64encode(os.urandom(size)).decode()},
        }
        for i in range(n_files)
    ]
    return spec_with(files=files)


@pytest.mark.parametrize(
    ("n_files", "size", "expected_maps", "gz"),
    [(2, 10, 1, False), (50, 2000, 1, True), (3, 600 * 1024, 3, True)],
)
def test_configmaps_split_and_gzip(n_files: int, size: int, expected_maps: int, gz: bool) -> None:
    plan = bp.plan(inputs(rendered_spec=big_spec(n_files, size)))
    opts = bp.PodOptions(namespace="ns")
    owner = {"apiVersion": names.API_VERSION, "kind": "MachineConfigPool", "name": "worker", "uid": "u"}
    cms = bp.configmaps(plan, opts, owner)
    assert len(cms) == expected_maps
    assert cms[0]["data"] == {"Containerfile": plan.containerfile}
    chunks = []
    for i, cm in enumerate(cms):
        assert cm["metadata"]["name"] == f"{plan.name}-context-{i}"
        assert cm["metadata"]["labels"] == plan.labels
        assert cm["metadata"]["ownerReferences"] == [owner]
        assert len(json.dumps(cm)) < 1024 * 1024 - 16 * 1024
        ((key, value),) = cm["binaryData"].items()
        assert key.endswith(f".{i:03d}") and key.startswith("context.tar.gz" if gz else "context.tar.")
        chunks.append(base64.b64decode(value))
    members = untar(key.rsplit(".", 1)[0], b"".join(chunks))
    assert sum(1 for m in members.values() if m.isfile()) == n_files


def dockercfg_secret(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    key = ".dockerconfigjson" if kind.endswith("json") else ".dockercfg"
    return {
        "metadata": {"name": "s", "namespace": "ns"},
        "type": kind,
        "data": {key: base64.b64encode(json.dumps(payload).encode()).decode()},
    }


AUTH = {"r.io": {"auth": base64.b64encode(b"u:p").decode()}}


@pytest.mark.parametrize(
    "secret",
    [
        dockercfg_secret("kubernetes.io/dockerconfigjson", {"auths": AUTH}),
        dockercfg_secret("kubernetes.io/dockercfg", AUTH),
    ],
)
def test_dockerconfigjson_accepts_both_types(secret: dict[str, Any]) -> None:
    assert json.loads(bp.dockerconfigjson(secret)) == {"auths": AUTH}


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ({"metadata": {"name": "s"}, "type": "Opaque", "data": {}}, "Secret s: type 'Opaque'"),
        (
            {"metadata": {"name": "s"}, "type": "kubernetes.io/dockercfg", "data": {}},
            "Secret s: has no .dockercfg",
        ),
        (
            {
                "metadata": {"name": "s", "namespace": "n"},
                "type": "kubernetes.io/dockercfg",
                "data": {".dockercfg": "e30K!"},
            },
            "Secret n/s: .dockercfg is not base64-encoded JSON",
        ),
    ],
)
def test_dockerconfigjson_names_the_problem(secret: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bp.dockerconfigjson(secret)


def test_build_pod() -> None:
    plan = bp.plan(inputs())
    opts = bp.PodOptions(namespace="ns", buildah_image="example/buildah:1", tls_verify=False)
    owner = {"apiVersion": names.API_VERSION, "kind": "MachineConfigPool", "name": "worker", "uid": "u"}
    pull, push = bp.SecretRef("pull-secret"), bp.SecretRef("push-secret", "kubernetes.io/dockercfg")
    pod = bp.build_pod(plan, opts, owner, pull=pull, push=push)
    meta = pod["metadata"]
    assert meta["name"] == plan.name == f"build-worker-{plan.identity[:16]}"
    assert meta["namespace"] == "ns"
    assert meta["labels"] == {
        names.BUILD_OBJECT_LABEL: "true",
        names.TARGET_POOL_LABEL: "worker",
        names.RENDERED_CONFIG_LABEL: "rendered-worker-0123",
    }
    assert meta["ownerReferences"] == [owner]
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    (c,) = spec["containers"]
    assert c["image"] == "example/buildah:1"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    script = c["command"][2]
    assert (
        "--storage-driver vfs" in script and "--isolation chroot" in script and "--tls-verify=false" in script
    )
    assert f"--digestfile /dev/termination-log {plan.target} docker://{plan.target}" in script
    # The dockerconfigjson Secret is used as it is; the legacy dockercfg one is wrapped into {"auths": ...}.
    assert "--authfile /etc/mcosup-build/pull/config.json" in script
    assert "--authfile /var/lib/mcosup-build/push-auth.json" in script
    assert (
        """printf '{"auths":%s}' "$(cat /etc/mcosup-build/push/dockercfg)" """
        "> /var/lib/mcosup-build/push-auth.json" in script
    )
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["context-0"]["configMap"]["name"] == f"{plan.name}-context-0"
    assert volumes["pull-secret"]["secret"] == {
        "secretName": "pull-secret",
        "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
    }
    assert volumes["push-secret"]["secret"] == {
        "secretName": "push-secret",
        "items": [{"key": ".dockercfg", "path": "dockercfg"}],
    }
    assert "emptyDir" in volumes["work"]
    assert {m["name"] for m in c["volumeMounts"]} == set(volumes)
    default = bp.build_pod(plan, bp.PodOptions(), pull=pull, push=pull)
    assert "--tls-verify" not in default["spec"]["containers"][0]["command"][2]


def test_build_pod_without_a_pull_secret_pulls_the_base_image_anonymously() -> None:
    """A MachineOSConfig without ``baseImagePullSecret``: no pull credentials mounted or passed."""
    plan = bp.plan(inputs())
    pod = bp.build_pod(plan, bp.PodOptions(), pull=None, push=bp.SecretRef("push-secret"))
    (c,) = pod["spec"]["containers"]
    bud, push = [line for line in c["command"][2].splitlines() if line.startswith("buildah ")]
    assert " bud " in bud and "--authfile" not in bud
    assert "--authfile /etc/mcosup-build/push/config.json" in push
    assert {v["name"] for v in pod["spec"]["volumes"]} == {"context-0", "push-secret", "work"}
    assert {m["name"] for m in c["volumeMounts"]} == {"context-0", "push-secret", "work"}


def test_plan_refuses_bad_pullspec_naming_the_config() -> None:
    with pytest.raises(bp.BuildError, match="on-cluster-build-config: finalImagePullspec"):
        bp.plan(inputs(pullspec="Not A Ref"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("rendered-worker-" + "a" * 32, "rendered-worker-" + "a" * 32),
        (
            "rendered-a-very-long-pool-name-x-" + "b" * 32,
            ("rendered-a-very-long-pool-name-x-" + "b" * 32)[:63],
        ),
        ("p" * 62 + "-x", "p" * 62),
    ],
)
def test_label_values_stay_valid(value: str, expected: str) -> None:
    assert names.label_value(value) == expected
    assert len(names.label_value(value)) <= 63


def test_build_job_runs_the_build_pod_with_retries_and_a_deadline() -> None:
    plan = bp.plan(inputs())
    owner = {"apiVersion": names.API_VERSION, "kind": "MachineOSBuild", "name": "worker-x", "uid": "u"}
    pull, push = bp.SecretRef("pull-secret"), bp.SecretRef("push-secret")
    job = bp.build_job(
        plan,
        bp.PodOptions(namespace="ns"),
        owner,
        pull=pull,
        push=push,
        backoff_limit=3,
        deadline_seconds=2700,
    )
    pod = bp.build_pod(plan, bp.PodOptions(namespace="ns"), pull=pull, push=push)
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["metadata"]["name"] == plan.name and job["metadata"]["ownerReferences"] == [owner]
    assert job["metadata"]["labels"] == plan.labels == job["spec"]["template"]["metadata"]["labels"]
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (3, 2700)
    assert job["spec"]["template"]["spec"] == pod["spec"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
