"""MachineConfig / Ignition validation: every rule, with the field named and the fix in the message."""

from __future__ import annotations

import base64
import gzip
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcosup.model.ignition import decode_data_url
from mcosup.model.machineconfig import (
    Problem,
    problems,
    undeliverable_files,
    undeliverable_paths,
)


def b64(text: bytes) -> str:
    return "data:;base64," + base64.b64encode(text).decode()


def mc(config: dict[str, Any] | None = None, version: str = "3.4.0", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ignition": {"version": version}}
    body.update(config or {})
    return {
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfig",
        "metadata": {"name": "50-test", "labels": {"machineconfiguration.openshift.io/role": "worker"}},
        "spec": {"config": body, **spec},
    }


def files(*entries: dict[str, Any], version: str = "3.4.0") -> dict[str, Any]:
    return mc({"storage": {"files": list(entries)}}, version=version)


def units(*entries: dict[str, Any]) -> dict[str, Any]:
    return mc({"systemd": {"units": list(entries)}})


def good_file(path: str = "/etc/foo.conf", **extra: Any) -> dict[str, Any]:
    return {"path": path, "mode": 0o644, "contents": {"source": b64(b"x=1\n")}, **extra}


def test_every_fixture_machineconfig_is_valid(mco_fixtures: Path) -> None:
    seen = 0
    for path in sorted((mco_fixtures / "objects").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "MachineConfig":
                seen += 1
                assert problems(document) == [], path.name
    assert seen >= 3


VALID = [
    pytest.param(mc(), id="empty-3.4"),
    pytest.param(mc(version="3.0.0"), id="empty-3.0"),
    pytest.param(mc(version="2.2.0"), id="empty-2.2"),
    pytest.param({"spec": {}}, id="no-config"),
    pytest.param({"spec": {"config": {}}}, id="config-empty-object"),
    pytest.param(files(good_file()), id="base64-file"),
    pytest.param(files({"path": "/etc/a", "contents": {"source": "data:,a%20b%0A"}}), id="percent-file"),
    pytest.param(
        files({"path": "/etc/a", "contents": {"source": "data:text/plain;charset=utf-8;base64,eA=="}}),
        id="mediatype",
    ),
    pytest.param(files({"path": "/etc/a"}), id="no-contents"),
    pytest.param(files({"path": "/etc/a", "contents": {}}), id="empty-contents"),
    pytest.param(
        files(
            {"path": "/etc/a", "contents": {"compression": "gzip", "source": b64(gzip.compress(b"hello"))}}
        ),
        id="gzip",
    ),
    pytest.param(files({"path": "/etc/a", "mode": 0o777}), id="mode-777"),
    pytest.param(files({"path": "/etc/a", "append": []}), id="empty-append-v3"),
    pytest.param(
        files({"path": "/etc/a", "filesystem": "root", "append": False}, version="2.2.0"), id="v2-root"
    ),
    pytest.param(units({"name": "foo.service", "enabled": True, "contents": "[Service]\n"}), id="unit"),
    pytest.param(
        units({"name": "getty@tty1.service", "dropins": [{"name": "10-x.conf", "contents": ""}]}), id="dropin"
    ),
    pytest.param(units({"name": "foo.timer", "mask": True}), id="mask"),
    pytest.param(
        mc(
            {
                "passwd": {
                    "users": [
                        {"name": "core", "sshAuthorizedKeys": ["ssh-ed25519 AAA"], "passwordHash": "$6$x"}
                    ]
                }
            }
        ),
        id="core-user",
    ),
    pytest.param(mc(kernelType="realtime"), id="realtime"),
    pytest.param(mc(kernelType="64k-pages"), id="64k"),
    pytest.param(mc(kernelType="default"), id="default-kernel"),
    pytest.param(mc(kernelType=""), id="empty-kernel"),
    pytest.param(
        mc(kernelArguments=["nosmt", "foo=bar"], extensions=["usbguard"], fips=True), id="spec-extras"
    ),
    pytest.param(mc({"kernelArguments": {"shouldExist": [], "shouldNotExist": []}}), id="empty-ign-kargs"),
    pytest.param(mc({"storage": {"disks": [], "links": None}}), id="empty-unsupported-lists"),
]


@pytest.mark.parametrize("config", VALID)
def test_valid_machineconfigs_have_no_problems(config: dict[str, Any]) -> None:
    assert problems(config) == []


# (machineconfig, field, words the message must contain: what is wrong and the fix)
INVALID = [
    pytest.param(
        mc(version="3.5.0"),
        "spec.config.ignition.version",
        ["'3.5.0'", "not supported", "use 3.4.0"],
        id="v3.5",
    ),
    pytest.param(
        mc(version="1.0.0"), "spec.config.ignition.version", ["not supported", "2.2.0", "3.0.0"], id="v1"
    ),
    pytest.param(
        mc(version="banana"), "spec.config.ignition.version", ["not supported"], id="garbage-version"
    ),
    pytest.param(
        {"spec": {"config": {"storage": {}}}},
        "spec.config.ignition.version",
        ["is required", "3.4.0"],
        id="no-version",
    ),
    pytest.param(
        files(good_file("etc/foo")),
        "spec.config.storage.files[0].path",
        ["relative", "'/etc/foo'"],
        id="relative",
    ),
    pytest.param(
        files(good_file("/etc/../etc/foo")),
        "spec.config.storage.files[0].path",
        ["not normalised", "'/etc/foo'"],
        id="dotdot",
    ),
    pytest.param(
        files(good_file("/etc//foo")),
        "spec.config.storage.files[0].path",
        ["not normalised", "'/etc/foo'"],
        id="double-slash",
    ),
    pytest.param(
        files(good_file("/etc/foo/")),
        "spec.config.storage.files[0].path",
        ["not normalised"],
        id="trailing-slash",
    ),
    pytest.param(
        files(good_file("/etc/./foo")), "spec.config.storage.files[0].path", ["not normalised"], id="dot"
    ),
    pytest.param(
        files({"mode": 420}),
        "spec.config.storage.files[0].path",
        ["is required", "absolute path"],
        id="no-path",
    ),
    pytest.param(
        files(good_file(), good_file()),
        "spec.config.storage.files[1].path",
        ["already declared at files[0]"],
        id="dup-path",
    ),
    pytest.param(
        files(good_file(mode=0o4755)),
        "spec.config.storage.files[0].mode",
        ["0o4755", "setuid", "0o755"],
        id="setuid",
    ),
    pytest.param(
        files(good_file(mode=-1)), "spec.config.storage.files[0].mode", ["negative"], id="negative-mode"
    ),
    pytest.param(
        files(good_file(mode="0644")),
        "spec.config.storage.files[0].mode",
        ["must be an integer", "420"],
        id="string-mode",
    ),
    pytest.param(
        files({"path": "/etc/a", "contents": {"source": "https://example.com/a"}}),
        "spec.config.storage.files[0].contents.source",
        ["https: URL", "data:;base64"],
        id="https-source",
    ),
    pytest.param(
        files({"path": "/etc/a", "contents": {"source": ""}}),
        "spec.config.storage.files[0].contents.source",
        ["not a URL", "omit source for an empty file"],
        id="empty-source",
    ),
    pytest.param(
        files({"path": "/etc/a", "contents": {"source": "data:;base64,!!!notbase64"}}),
        "spec.config.storage.files[0].contents.source",
        ["cannot be decoded", "not padded standard base64"],
        id="bad-base64",
    ),
    pytest.param(
        files({"path": "/etc/a", "contents": {"source": "data:,100%"}}),
        "spec.config.storage.files[0].contents.source",
        ["cannot be decoded", "'%'"],
        id="bad-percent",
    ),
    pytest.param(
        files({"path": "/etc/a", "contents": {"source": "data:nocomma"}}),
        "spec.config.storage.files[0].contents.source",
        ["no ','"],
        id="no-comma",
    ),
    pytest.param(
        files({"path": "/etc/a", "contents": {"compression": "gzip", "source": b64(b"not gzip")}}),
        "spec.config.storage.files[0].contents.source",
        ["not valid gzip"],
        id="bad-gzip",
    ),
    pytest.param(
        files(
            {
                "path": "/etc/a",
                "contents": {"compression": "gzip", "source": b64(gzip.compress(b"x" * 1000)[:-12])},
            }
        ),
        "spec.config.storage.files[0].contents.source",
        ["truncated"],
        id="truncated-gzip",
    ),
    pytest.param(
        files({"path": "/etc/a", "contents": {"compression": "bzip2", "source": "data:,x"}}),
        "spec.config.storage.files[0].contents.compression",
        ["'bzip2'", "use gzip"],
        id="bzip2",
    ),
    pytest.param(
        files({"path": "/etc/a", "contents": {"inline": "x"}}),
        "spec.config.storage.files[0].contents.inline",
        ["Butane", "data: URL"],
        id="butane-inline",
    ),
    pytest.param(
        files(good_file(append=[{"source": "data:,x"}])),
        "spec.config.storage.files[0].append",
        ["appending", "complete file"],
        id="append-v3",
    ),
    pytest.param(
        files({"path": "/etc/a", "filesystem": "root", "append": True}, version="2.2.0"),
        "spec.config.storage.files[0].append",
        ["appending"],
        id="append-v2",
    ),
    pytest.param(
        files({"path": "/etc/a", "filesystem": "var"}, version="2.2.0"),
        "spec.config.storage.files[0].filesystem",
        ["'var'", "filesystem: root"],
        id="v2-filesystem",
    ),
    pytest.param(
        mc({"storage": {"disks": [{"device": "/dev/sdb"}]}}),
        "spec.config.storage.disks",
        ["install time", "remove storage.disks"],
        id="disks",
    ),
    pytest.param(
        mc({"storage": {"filesystems": [{"device": "/dev/sdb1"}]}}),
        "spec.config.storage.filesystems",
        ["install time"],
        id="filesystems",
    ),
    pytest.param(
        mc({"storage": {"raid": [{"name": "md0"}]}}), "spec.config.storage.raid", ["install time"], id="raid"
    ),
    pytest.param(
        mc({"storage": {"luks": [{"name": "x"}]}}), "spec.config.storage.luks", ["install time"], id="luks"
    ),
    pytest.param(
        mc({"storage": {"directories": [{"path": "/etc/d"}]}}),
        "spec.config.storage.directories",
        ["not supported", "tmpfiles.d"],
        id="directories",
    ),
    pytest.param(
        mc({"storage": {"links": [{"path": "/etc/l", "target": "/x"}]}}),
        "spec.config.storage.links",
        ["not supported", "tmpfiles.d"],
        id="links",
    ),
    pytest.param(
        mc({"kernelArguments": {"shouldExist": ["nosmt"]}}),
        "spec.config.kernelArguments",
        ["not supported", "spec.kernelArguments"],
        id="ign-kargs",
    ),
    pytest.param(
        mc({"passwd": {"users": [{"name": "alice", "sshAuthorizedKeys": ["k"]}]}}),
        "spec.config.passwd.users[0].name",
        ["'alice'", "only user core"],
        id="other-user",
    ),
    pytest.param(
        mc({"passwd": {"users": [{"name": "core", "groups": ["wheel"]}]}}),
        "spec.config.passwd.users[0].groups",
        ["groups of user core", "sshAuthorizedKeys and passwordHash", "remove groups"],
        id="core-groups",
    ),
    pytest.param(
        mc({"passwd": {"users": [{"name": "core", "shell": "/bin/zsh"}]}}),
        "spec.config.passwd.users[0].shell",
        ["shell of user core", "remove shell"],
        id="core-shell",
    ),
    pytest.param(
        mc({"passwd": {"groups": [{"name": "g"}]}}),
        "spec.config.passwd.groups",
        ["not supported", "remove passwd.groups"],
        id="groups",
    ),
    pytest.param(
        units({"name": "foo"}),
        "spec.config.systemd.units[0].name",
        ["'foo'", "not a valid systemd unit name", ".service"],
        id="unit-no-suffix",
    ),
    pytest.param(
        units({"name": "a/b.service"}),
        "spec.config.systemd.units[0].name",
        ["not a valid systemd unit name"],
        id="unit-slash",
    ),
    pytest.param(
        units({"contents": "x"}), "spec.config.systemd.units[0].name", ["is required"], id="unit-no-name"
    ),
    pytest.param(
        units({"name": "a.service"}, {"name": "a.service"}),
        "spec.config.systemd.units[1].name",
        ["already declared at units[0]"],
        id="dup-unit",
    ),
    pytest.param(
        units({"name": "a.service", "dropins": [{"name": "override", "contents": "x"}]}),
        "spec.config.systemd.units[0].dropins[0].name",
        ["'override'", "ending in .conf"],
        id="dropin-no-conf",
    ),
    pytest.param(
        units({"name": "a.service", "enabled": "yes"}),
        "spec.config.systemd.units[0].enabled",
        ["true or false"],
        id="enabled-string",
    ),
    pytest.param(
        mc(kernelType="rt"), "spec.kernelType", ["'rt'", "'realtime'", "'64k-pages'"], id="kernel-type"
    ),
    pytest.param(
        mc(kernelArguments=["ok", 3]), "spec.kernelArguments[1]", ["non-empty string"], id="karg-int"
    ),
    pytest.param(
        mc({"storage": {"files": "nope"}}),
        "spec.config.storage.files",
        ["must be a list"],
        id="files-not-list",
    ),
    pytest.param({"spec": "nope"}, "spec", ["must be an object"], id="spec-not-object"),
]


@pytest.mark.parametrize(("config", "field", "words"), INVALID)
def test_invalid_machineconfigs_name_the_field_and_the_fix(
    config: dict[str, Any], field: str, words: list[str]
) -> None:
    found = problems(config)
    matching = [p for p in found if p.field == field]
    assert matching, f"no problem for {field}; got {found}"
    for word in words:
        assert word in matching[0].message, (word, matching[0].message)


def test_every_problem_is_listed_not_just_the_first() -> None:
    config = mc(
        {
            "storage": {
                "files": [good_file("rel"), good_file("/etc/x", mode=0o7777)],
                "links": [{"path": "/a"}],
            }
        }
    )
    fields = {p.field for p in problems(config)}
    assert fields == {
        "spec.config.storage.files[0].path",
        "spec.config.storage.files[1].mode",
        "spec.config.storage.links",
    }


def test_problem_reads_as_field_then_message() -> None:
    assert str(Problem("spec.x", "is wrong: fix it")) == "spec.x: is wrong: fix it"


def test_data_urls_decode_to_the_file_bytes() -> None:
    assert decode_data_url("data:,GROUP%3Dstable%0A") == b"GROUP=stable\n"
    assert decode_data_url(b64(b"\x00\xff binary")) == b"\x00\xff binary"
    assert decode_data_url(b64(gzip.compress(b"zipped")), "gzip") == b"zipped"


def test_gzip_bombs_are_refused_without_inflating_them() -> None:
    bomb = gzip.compress(b"\0" * (80 * 1024 * 1024))
    config = files({"path": "/etc/a", "contents": {"compression": "gzip", "source": b64(bomb)}})
    [problem] = problems(config)
    assert "more than 64 MiB" in problem.message and "OS image" in problem.message


def test_undeliverable_paths_are_the_files_an_image_cannot_carry() -> None:
    config = files(
        good_file("/var/lib/x"),
        good_file("/etc/ok"),
        good_file("/usr/local/bin/tool"),
        good_file("/usr/lib/ok"),
        good_file("/home/core/.bashrc"),
        good_file("/variable/ok"),
        good_file("/run/x"),
        good_file("/tmp/x"),
        good_file("/root/.ssh/config"),
    )
    assert undeliverable_paths(config) == [
        "/var/lib/x",
        "/usr/local/bin/tool",
        "/home/core/.bashrc",
        "/run/x",
        "/tmp/x",
        "/root/.ssh/config",
    ]
    assert undeliverable_files(config)[0] == ("spec.config.storage.files[0].path", "/var/lib/x")


def test_undeliverable_paths_see_through_unnormalised_paths() -> None:
    assert undeliverable_paths(files(good_file("/etc/../var/x"))) == ["/etc/../var/x"]
