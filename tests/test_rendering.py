"""Render: the merge rules of contract section 3, as tables of inputs and hand-written expected merges."""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcosup.model import ignition, names, rendering

ROLE = names.ROLE_LABEL


def load(mco_fixtures: Path, name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((mco_fixtures / "objects" / name).read_text()) if d]
    assert len(docs) == 1
    doc: dict[str, Any] = docs[0]
    return doc


def mc(name: str, role: str = "worker", **spec: Any) -> dict[str, Any]:
    config = spec.pop("config", {"ignition": {"version": "3.2.0"}})
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfig",
        "metadata": {"name": name, "labels": {ROLE: role}},
        "spec": {"config": config, **spec},
    }


def files(*entries: tuple[str, str, int]) -> dict[str, Any]:
    return {
        "ignition": {"version": "3.2.0"},
        "storage": {
            "files": [{"path": p, "mode": m, "contents": {"source": "data:," + c}} for p, c, m in entries]
        },
    }


def units(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"ignition": {"version": "3.2.0"}, "systemd": {"units": list(entries)}}


def users(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"ignition": {"version": "3.2.0"}, "passwd": {"users": list(entries)}}


MERGES: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = [
    (
        "files by path, later name wins, unrelated paths kept, sorted by path",
        [
            mc("10-b", config=files(("/etc/b", "new", 0o600))),
            mc("00-a", config=files(("/etc/b", "old", 0o644), ("/etc/a", "a", 0o644))),
        ],
        {
            "storage": {
                "files": [
                    {"path": "/etc/a", "mode": 0o644, "contents": {"source": "data:,a"}},
                    {"path": "/etc/b", "mode": 0o600, "contents": {"source": "data:,new"}},
                ]
            }
        },
    ),
    (
        "units by name: later fields override, missing fields kept, drop-ins merged by name",
        [
            mc(
                "00-a",
                config=units(
                    {
                        "name": "x.service",
                        "enabled": True,
                        "contents": "[Service]\nExecStart=/bin/a\n",
                        "dropins": [
                            {"name": "10-a.conf", "contents": "A"},
                            {"name": "20-b.conf", "contents": "B"},
                        ],
                    }
                ),
            ),
            mc(
                "01-b",
                config=units(
                    {
                        "name": "x.service",
                        "enabled": False,
                        "dropins": [
                            {"name": "20-b.conf", "contents": "B2"},
                            {"name": "05-c.conf", "contents": "C"},
                        ],
                    },
                    {"name": "a.service", "mask": True},
                ),
            ),
        ],
        {
            "systemd": {
                "units": [
                    {"name": "a.service", "mask": True},
                    {
                        "name": "x.service",
                        "enabled": False,
                        "contents": "[Service]\nExecStart=/bin/a\n",
                        "dropins": [
                            {"name": "05-c.conf", "contents": "C"},
                            {"name": "10-a.conf", "contents": "A"},
                            {"name": "20-b.conf", "contents": "B2"},
                        ],
                    },
                ]
            }
        },
    ),
    (
        "users by name: ssh keys unioned in order, last password hash wins",
        [
            mc(
                "00-a",
                config=users({"name": "core", "sshAuthorizedKeys": ["k1", "k2"], "passwordHash": "h1"}),
            ),
            mc("01-b", config=users({"name": "core", "sshAuthorizedKeys": ["k2", "k3"]})),
            mc("02-c", config=users({"name": "core", "passwordHash": "h2"})),
        ],
        {
            "passwd": {
                "users": [{"name": "core", "sshAuthorizedKeys": ["k1", "k2", "k3"], "passwordHash": "h2"}]
            }
        },
    ),
    (
        "kernel arguments appended with duplicates dropped; extensions unioned",
        [
            mc("00-a", kernelArguments=["a=1", "nosmt"], extensions=["usbguard"]),
            mc("01-b", kernelArguments=["nosmt", "b=2", "a=1"], extensions=["kerberos", "usbguard"]),
        ],
        {"kernelArguments": ["a=1", "nosmt", "b=2"], "extensions": ["usbguard", "kerberos"]},
    ),
    (
        "kernelType and osImageURL: last non-empty; fips OR-ed",
        [
            mc("00-a", kernelType="realtime", osImageURL="quay.io/os@sha256:" + "a" * 64, fips=True),
            mc("01-b", kernelType="", osImageURL="quay.io/os@sha256:" + "b" * 64, fips=False),
            mc("02-c", osImageURL=""),
        ],
        {"kernelType": "realtime", "osImageURL": "quay.io/os@sha256:" + "b" * 64, "fips": True},
    ),
    (
        "nothing selected: an empty, well-formed config",
        [],
        {
            "config": {"ignition": {"version": "3.2.0"}},
            "passwd": {"users": []},
            "storage": {"files": []},
            "systemd": {"units": []},
            "kernelArguments": [],
            "extensions": [],
            "kernelType": "",
            "osImageURL": "",
            "fips": False,
        },
    ),
]


def pick(spec: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The parts of ``spec`` the expectation talks about (sections live under spec.config)."""
    out: dict[str, Any] = {}
    for key in expected:
        if key in ("storage", "systemd", "passwd", "ignition"):
            out[key] = spec["config"][key]
        elif key == "config":
            out[key] = {"ignition": spec["config"]["ignition"]}
        else:
            out[key] = spec[key]
    return out


@pytest.mark.parametrize(("case", "inputs", "expected"), MERGES, ids=[m[0] for m in MERGES])
def test_merge_rules(case: str, inputs: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    result = rendering.render("worker", inputs)
    assert pick(result.spec, expected) == expected
    assert result.sources == tuple(sorted(m["metadata"]["name"] for m in inputs))


def test_fixture_merge(mco_fixtures: Path) -> None:
    ssh = load(mco_fixtures, "99_openshift-machineconfig_worker.yaml")
    test_config = load(mco_fixtures, "test-config.machineconfig.yaml")
    extra = mc(
        "50-extra",
        config=files(("/etc/coreos/update.conf", "GROUP%3Dbeta%0A", 0o640)),
        kernelArguments=["nosmt", "quiet"],
    )
    extra["spec"]["config"]["passwd"] = {"users": [{"name": "core", "sshAuthorizedKeys": ["ssh-ed25519 K2"]}]}
    result = rendering.render("worker", [test_config, extra, ssh])

    assert result.sources == ("50-extra", "99-worker-ssh", "test-config")
    config = result.spec["config"]
    # test-config sorts last, so its update.conf wins over 50-extra's; the 2.x-only `filesystem` is gone.
    assert config["storage"]["files"] == [
        {
            "path": "/etc/coreos/update.conf",
            "mode": 420,
            "contents": {
                "source": "data:,GROUP%3Dstable%0ASERVER%3Dhttp%3A%2F%2Flocalhost%3A32003%2Fv1%2Fupdate%0A",
                "verification": {},
            },
        }
    ]
    assert [u["name"] for u in config["systemd"]["units"]] == [
        "docker.service",
        "etcd-member-tls.service",
        "etcd-member.service",
        "kubelet-workaround.service",
        "kubelet.service",
        "locksmith.service",
    ]
    docker = config["systemd"]["units"][0]
    assert docker["dropins"][0]["name"] == "10-dockeropts.conf"
    assert config["passwd"]["users"] == [
        {"name": "core", "sshAuthorizedKeys": ["ssh-ed25519 K2", "ssh-rsa SSH-AUTHORIZED-KEY"]}
    ]
    assert result.spec["kernelArguments"] == ["nosmt", "quiet", "foo=bar"]
    assert result.spec["osImageURL"] == test_config["spec"]["osImageURL"]
    assert config["ignition"]["version"] == "3.2.0"


def test_name_is_hash_of_canonical_spec_and_stable(mco_fixtures: Path) -> None:
    inputs = [
        load(mco_fixtures, "99_openshift-machineconfig_worker.yaml"),
        load(mco_fixtures, "test-config.machineconfig.yaml"),
    ]
    a = rendering.render("worker", inputs)
    b = rendering.render("worker", list(reversed(copy.deepcopy(inputs))))
    assert a.name == b.name
    assert a.canonical == b.canonical
    assert a.name == "rendered-worker-" + hashlib.sha256(a.canonical).hexdigest()[:32]
    assert json.loads(a.canonical) == a.spec == a.machineconfig["spec"]
    assert a.machineconfig["metadata"]["name"] == a.name
    # A different pool with the same inputs gets a different name; a changed input another hash.
    assert rendering.render("infra", inputs).name.startswith("rendered-infra-")
    changed = copy.deepcopy(inputs)
    changed[0]["spec"]["kernelArguments"] = ["x=1"]
    assert rendering.render("worker", changed).name != a.name


def test_pool_object_gives_owner_reference_and_configuration(mco_fixtures: Path) -> None:
    pool = load(mco_fixtures, "worker.machineconfigpool.yaml")
    pool["metadata"]["uid"] = "1234"
    result = rendering.render(pool, [load(mco_fixtures, "99_openshift-machineconfig_worker.yaml")])
    (ref,) = result.machineconfig["metadata"]["ownerReferences"]
    assert ref == {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfigPool",
        "name": "worker",
        "uid": "1234",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert result.configuration() == {
        "name": result.name,
        "source": [{"apiVersion": names.API_VERSION, "kind": "MachineConfig", "name": "99-worker-ssh"}],
    }


SELECTS: list[tuple[dict[str, Any] | None, dict[str, str], bool]] = [
    ({"matchLabels": {ROLE: "worker"}}, {ROLE: "worker"}, True),
    ({"matchLabels": {ROLE: "worker"}}, {ROLE: "master"}, False),
    ({"matchLabels": {ROLE: "worker"}}, {}, False),
    (None, {ROLE: "worker"}, False),
    ({}, {ROLE: "anything"}, True),
    (
        {"matchExpressions": [{"key": ROLE, "operator": "In", "values": ["worker", "infra"]}]},
        {ROLE: "infra"},
        True,
    ),
    ({"matchExpressions": [{"key": ROLE, "operator": "NotIn", "values": ["worker"]}]}, {ROLE: "infra"}, True),
    (
        {"matchExpressions": [{"key": ROLE, "operator": "NotIn", "values": ["worker"]}]},
        {ROLE: "worker"},
        False,
    ),
    ({"matchExpressions": [{"key": ROLE, "operator": "Exists"}]}, {ROLE: ""}, True),
    ({"matchExpressions": [{"key": ROLE, "operator": "DoesNotExist"}]}, {ROLE: ""}, False),
    (
        {
            "matchLabels": {"a": "1"},
            "matchExpressions": [{"key": ROLE, "operator": "In", "values": ["worker"]}],
        },
        {"a": "1", ROLE: "master"},
        False,
    ),
]


@pytest.mark.parametrize(("selector", "labels", "expected"), SELECTS)
def test_selects(selector: dict[str, Any] | None, labels: dict[str, str], expected: bool) -> None:
    pool = {"metadata": {"name": "p"}, "spec": {"machineConfigSelector": selector}}
    config = {"metadata": {"name": "m", "labels": labels}}
    assert rendering.selects(pool, config) is expected


def test_select_fixture_pools_and_skips_rendered(mco_fixtures: Path) -> None:
    worker = load(mco_fixtures, "worker.machineconfigpool.yaml")
    master = load(mco_fixtures, "master.machineconfigpool.yaml")
    w = load(mco_fixtures, "99_openshift-machineconfig_worker.yaml")
    m = load(mco_fixtures, "99_openshift-machineconfig_master.yaml")
    rendered = mc("rendered-worker-abc")
    assert [x["metadata"]["name"] for x in rendering.select(worker, [m, rendered, w])] == ["99-worker-ssh"]
    assert [x["metadata"]["name"] for x in rendering.select(master, [m, w])] == ["99-master-ssh"]


def test_bad_operator_names_pool_and_field() -> None:
    pool = {
        "metadata": {"name": "p"},
        "spec": {"machineConfigSelector": {"matchExpressions": [{"key": "k", "operator": "Gt"}]}},
    }
    with pytest.raises(rendering.SelectorError, match=r"MachineConfigPool p: spec.machineConfigSelector"):
        rendering.selects(pool, {"metadata": {"name": "m", "labels": {"k": "1"}}})


INVALID: list[tuple[dict[str, Any], str]] = [
    (mc("bad", config=files(("etc/x", "a", 0o644))), "spec.config.storage.files[0].path"),
    (mc("bad", config=files(("/etc/x", "a", 0o1777))), "spec.config.storage.files[0].mode"),
    (
        mc(
            "bad",
            config={
                "ignition": {"version": "3.2.0"},
                "storage": {"files": [{"path": "/etc/x", "contents": {"source": "https://x/y"}}]},
            },
        ),
        "spec.config.storage.files[0].contents.source",
    ),
    (
        mc(
            "bad", config={"ignition": {"version": "3.2.0"}, "storage": {"directories": [{"path": "/etc/d"}]}}
        ),
        "spec.config.storage.directories",
    ),
    (mc("bad", config=units({"name": "x.service", "dropins": [{"name": "x"}]})), "dropins[0].name"),
    (mc("bad", kernelArguments="nosmt"), "spec.kernelArguments"),
]


@pytest.mark.parametrize(("config", "field"), INVALID)
def test_invalid_component_names_machineconfig_and_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(rendering.RenderError) as info:
        rendering.render("worker", [mc("00-good"), config])
    assert info.value.machineconfig == "bad"
    assert field in info.value.field
    assert str(info.value).startswith("MachineConfig bad: ")


DATA_URLS: list[tuple[str, str | None, bytes]] = [
    ("data:,hello%20world%0A", None, b"hello world\n"),
    (
        "data:text/plain;charset=utf-8;base64," + base64.b64encode(b"\x00\x01bin").decode(),
        None,
        b"\x00\x01bin",
    ),
    ("data:;base64," + base64.b64encode(gzip.compress(b"zipped", mtime=0)).decode(), "gzip", b"zipped"),
    ("data:,", "", b""),
]


@pytest.mark.parametrize(("source", "compression", "expected"), DATA_URLS)
def test_decode_data_url(source: str, compression: str | None, expected: bytes) -> None:
    assert ignition.decode_data_url(source, compression) == expected


@pytest.mark.parametrize(
    ("source", "compression", "message"),
    [
        ("http://x", None, "not a data: URL"),
        ("data:;base64,a", None, "base64"),
        ("data:,abc", "gzip", "not valid gzip"),
        ("data:,abc", "xz", "not supported"),
    ],
)
def test_decode_data_url_errors(source: str, compression: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ignition.decode_data_url(source, compression)
