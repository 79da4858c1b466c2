"""AdmissionReview parsing and responses; image references."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from mcosup.model.imageref import ImageRef, InvalidImageRef, is_digested, parse_image_ref
from webhooks.review import MalformedReview, Verdict, parse_review, respond, uid_of

DIGEST = "sha256:" + "0123456789abcdef" * 4


def body(**request: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "", "version": "v1", "kind": "Node"},
        "resource": {"group": "", "version": "v1", "resource": "nodes"},
        "name": "n",
        "operation": "UPDATE",
        "userInfo": {"username": "admin", "groups": ["system:masters"], "extra": {"k": ["v"]}},
        "object": {"metadata": {"name": "n"}},
        "oldObject": {"metadata": {"name": "n"}},
    }
    base.update(request)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": base}


def test_parse_fills_defaults_for_optional_fields() -> None:
    parsed = parse_review(orjson.dumps(body()))
    assert parsed["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert parsed["subResource"] == "" and parsed["namespace"] == "" and parsed["dryRun"] is False
    assert parsed["userInfo"] == {"username": "admin", "groups": ["system:masters"], "extra": {"k": ["v"]}}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"[]", "must be a JSON object"),
        (
            orjson.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}),
            "admissionReviewVersions",
        ),
        (
            orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
            "request is missing",
        ),
        (orjson.dumps(body(uid=None)), "request.uid is required"),
        (orjson.dumps(body(uid="")), "request.uid must not be empty"),
        (orjson.dumps(body(uid=7)), "request.uid must be a string"),
        (orjson.dumps(body(operation="PATCH")), "request.operation 'PATCH'"),
        (orjson.dumps(body(kind={"group": "", "version": "v1"})), "request.kind.kind is required"),
        (orjson.dumps(body(kind="Node")), "request.kind must be an object"),
        (orjson.dumps(body(object=[1])), "request.object must be an object or null"),
        (orjson.dumps(body(object={"metadata": "x"})), "request.object.metadata must be an object"),
        (orjson.dumps(body(userInfo={"groups": "admins"})), "request.userInfo.groups"),
        (orjson.dumps(body(userInfo={"extra": {"a": "b"}})), "request.userInfo.extra['a']"),
        (orjson.dumps(body(dryRun="yes")), "request.dryRun must be a boolean"),
    ],
)
def test_malformed_reviews_say_what_is_wrong(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedReview) as info:
        parse_review(raw)
    assert reason in info.value.reason


def test_response_echoes_uid_with_status_and_warnings() -> None:
    denied = respond("abc", Verdict.deny("Node n: nope", "careful"))
    assert denied == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": "abc",
            "allowed": False,
            "status": {"code": 403, "message": "Node n: nope"},
            "warnings": ["careful"],
        },
    }
    allowed = respond("xyz", Verdict.allow())
    assert allowed["response"] == {"uid": "xyz", "allowed": True}


def test_uid_of_reads_what_it_can() -> None:
    assert uid_of(orjson.dumps(body(operation="PATCH"))) == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert uid_of(b"{") is None and uid_of(b"[]") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("quay.io/org/os:4.16", ImageRef("quay.io", "org/os", "4.16")),
        ("localhost/os", ImageRef("localhost", "os")),
        ("127.0.0.1:5000/a/b/c", ImageRef("127.0.0.1:5000", "a/b/c")),
        (
            "image-registry.openshift-image-registry.svc:5000/ns/os-image:latest",
            ImageRef("image-registry.openshift-image-registry.svc:5000", "ns/os-image", "latest"),
        ),
        (f"r.example/os@{DIGEST}", ImageRef("r.example", "os", None, DIGEST)),
        (f"r.example/os:tag@{DIGEST}", ImageRef("r.example", "os", "tag", DIGEST)),
        ("[::1]:5000/os:x", ImageRef("[::1]:5000", "os", "x")),
        ("r.example/a__b/c-d.e_f", ImageRef("r.example", "a__b/c-d.e_f")),
    ],
)
def test_image_references_parse(text: str, expected: ImageRef) -> None:
    assert parse_image_ref(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("os:latest", "names no registry"),
        ("r.example/Os", "path component 'Os'"),
        ("r.example/os:", "tag ''"),
        ("r.example/os:-bad", "tag '-bad'"),
        ("r.example/os@sha256:abc", "digest 'sha256:abc'"),
        ("r.example/os@md5:" + "a" * 32, "digest"),
        ("r.example/", "no repository path"),
        ("r_x.example:5000/os", "registry 'r_x.example:5000'"),
        ("r.example/a//b", "path component ''"),
        (" r.example/os", "whitespace"),
        ("r.example/" + "a" * 300, "longer than 255"),
        ("http://r.example/os", "drop 'http://'"),
    ],
)
def test_garbage_image_references_are_rejected_with_the_part_named(text: str, reason: str) -> None:
    with pytest.raises(InvalidImageRef) as info:
        parse_image_ref(text)
    assert reason in str(info.value)


def test_image_ref_retag_and_pin() -> None:
    ref = parse_image_ref("r.example:5000/ns/os:user-tag")
    assert str(ref.with_tag("worker-0123456789abcdef")) == "r.example:5000/ns/os:worker-0123456789abcdef"
    assert str(ref.with_digest(DIGEST)) == f"r.example:5000/ns/os@{DIGEST}"
    assert is_digested(f"r.example/os@{DIGEST}") and not is_digested("r.example/os:x")
    with pytest.raises(InvalidImageRef):
        ref.with_digest("sha256:short")
    assert parse_image_ref("library/os", require_registry=False) == ImageRef("", "library/os")
