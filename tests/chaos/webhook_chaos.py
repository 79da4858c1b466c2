"""Chaos for the admission webhook (issue 17): hostile AdmissionReview bodies against the running HTTPS
server in a process of its own, then certificate rotation while clients send reviews without pause.

    python tests/chaos/webhook_chaos.py [--bodies 100000] [--rotations 20] [--seed 1]

Bodies are drawn from a seeded generator (the same seed gives the same bodies): random bytes, valid
reviews cut short, valid reviews with a field replaced by a random JSON value, wrong kinds and groups,
huge objects under and over the size limit, deep nesting, invalid UTF-8, odd numbers. Every answer must
be a verdict echoing the uid (HTTP 200) or a 400; a body over the limit may also be cut off by the
server before it is read whole. Anything else counts as a crash. The server's RSS is read after a
warm-up and at the end. Rotation issues a new serving certificate (same CA) ``--rotations`` times while
four clients post reviews, each on a new TLS connection; every failed review is counted.

Prints one table and exits 1 on any crash or failed review. ``make chaos`` runs the long version;
``tests/chaos/test_webhook_chaos.py`` a short one in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import datetime as dt
import io
import json
import os
import random
import ssl
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from mcosup.http import certs
from mcosup.model import names

#: The server's body limit in this run (the product's default is 7 MiB; a smaller one keeps huge
#: bodies cheap to send while still crossing it).
MAX_BODY = 1024 * 1024
CATEGORIES = ["bytes", "truncated", "field", "kind", "huge", "nested", "utf8", "json", "numbers", "valid"]
KINDS = ["MachineConfig", "MachineConfigPool", "Node", "ConfigMap", "Pod", "", "machineconfig", "Secret"]
GROUPS = ["", names.GROUP, "apps", "x" * 300]
FIELDS = [
    ("request",),
    ("request", "uid"),
    ("request", "kind"),
    ("request", "kind", "kind"),
    ("request", "operation"),
    ("request", "userInfo"),
    ("request", "userInfo", "username"),
    ("request", "userInfo", "extra"),
    ("request", "object"),
    ("request", "object", "metadata"),
    ("request", "object", "metadata", "labels"),
    ("request", "object", "spec"),
    ("request", "object", "spec", "config"),
    ("request", "object", "spec", "config", "storage", "files"),
    ("request", "object", "spec", "config", "systemd", "units"),
    ("request", "object", "spec", "kernelArguments"),
    ("request", "object", "spec", "machineConfigSelector"),
    ("request", "object", "data"),
    ("request", "oldObject"),
    ("request", "dryRun"),
    ("apiVersion",),
    ("kind",),
]


def review(uid: str, kind: str, obj: Any, old: Any = None, operation: str = "CREATE") -> dict[str, Any]:
    group = names.GROUP if kind.startswith("MachineConfig") else ""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": kind.lower() + "s"},
            "operation": operation,
            "userInfo": {"username": "kube:admin"},
            "object": obj,
            "oldObject": old,
        },
    }


def machineconfig(paths: list[str], role: str = "worker") -> dict[str, Any]:
    data = "data:;base64," + base64.b64encode(b"x").decode()
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfig",
        "metadata": {"name": "50-chaos", "labels": {names.ROLE_LABEL: role}},
        "spec": {
            "config": {
                "ignition": {"version": "3.4.0"},
                "storage": {"files": [{"path": p, "mode": 420, "contents": {"source": data}} for p in paths]},
                "systemd": {"units": [{"name": "a.service", "enabled": True, "contents": "[Service]\n"}]},
            },
            "kernelArguments": ["quiet"],
        },
    }


def valid_reviews(uid: str) -> list[dict[str, Any]]:
    node = {"metadata": {"name": "n", "annotations": {names.DESIRED_CONFIG: "rendered-worker-1"}}}
    old_node = {"metadata": {"name": "n", "labels": {names.DAEMON_MODE: names.MODE_LAYERED}}}
    pool = {
        "metadata": {"name": "worker", "labels": {names.LAYERING_ENABLED: ""}},
        "spec": {"machineConfigSelector": {"matchLabels": {names.ROLE_LABEL: "worker"}}},
    }
    return [
        review(uid, "MachineConfig", machineconfig(["/etc/ok", "/var/lib/x"])),
        review(uid, "MachineConfig", machineconfig(["/etc/ok"], role="master")),
        review(uid, "Node", node, old_node, operation="UPDATE"),
        review(uid, "MachineConfigPool", pool),
        review(uid, "ConfigMap", {"metadata": {"name": names.BUILD_CONFIG_CM}, "data": {}}),
    ]


@dataclass
class Generator:
    """Hostile bodies from a seed: ``body(i)`` is ``(category, bytes, uid or None)``."""

    seed: int
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def value(self, depth: int = 0) -> Any:
        r = self.rng
        pick = r.randrange(12 if depth < 3 else 8)
        if pick == 0:
            return None
        if pick == 1:
            return r.choice([True, False])
        if pick == 2:
            return r.choice([0, -1, 2**63, -(2**70), 10**400])
        if pick == 3:
            return r.choice([1.5, -0.0, 1e308])
        if pick == 4:
            return "".join(chr(r.randrange(0x20, 0x2FFF)) for _ in range(r.randrange(12)))
        if pick == 5:
            return r.choice(["", "/", "/etc/x", "data:,x", "../../etc/passwd", "\u0000", "%zz"])
        if pick in (6, 7):
            return r.choice(["MachineConfig", names.LAYERING_ENABLED, "layered", "rendered-worker-1"])
        if pick in (8, 9):
            return [self.value(depth + 1) for _ in range(r.randrange(4))]
        return {self.value_key(): self.value(depth + 1) for _ in range(r.randrange(4))}

    def value_key(self) -> str:
        return self.rng.choice(["metadata", "spec", "name", "labels", "x", "", "kind", "request", "uid"])

    def body(self, i: int) -> tuple[str, bytes, str | None]:
        r = self.rng
        uid = f"u-{self.seed}-{i}"
        # Huge bodies take most of the time to send and judge: one in fifty keeps a long run short.
        category = r.choices(CATEGORIES, weights=[1 if c == "huge" else 5.5 for c in CATEGORIES])[0]
        base = r.choice(valid_reviews(uid))
        if category == "bytes":
            return category, r.randbytes(r.randrange(2048)), None
        if category == "truncated":
            raw = json.dumps(base).encode()
            return category, raw[: r.randrange(len(raw))], None
        if category == "field":
            path = r.choice(FIELDS)
            target = base
            for key in path[:-1]:
                nxt = target.get(key) if isinstance(target, dict) else None
                if not isinstance(nxt, dict):
                    nxt = {}
                    target[key] = nxt
                target = nxt
            if r.random() < 0.3:
                target.pop(path[-1], None)
            else:
                target[path[-1]] = self.value()
            return category, json.dumps(base).encode(), _uid(base)
        if category == "kind":
            base["request"]["kind"] = {"group": r.choice(GROUPS), "version": "v1", "kind": r.choice(KINDS)}
            return category, json.dumps(base).encode(), uid
        if category == "huge":
            count = r.choice([2_000, 20_000, 40_000])  # about 0.1, 1 and 2 MiB of files
            obj = machineconfig([f"/etc/chaos/{n}" for n in range(count)])
            return category, json.dumps(review(uid, "MachineConfig", obj)).encode(), uid
        if category == "nested":
            depth = r.choice([100, 1_000, 1_100, 100_000])
            opener, closer = r.choice([("[", "]"), ('{"a":', "}")])
            inner = opener * depth + "1" + closer * depth
            if r.random() < 0.5:
                return category, inner.encode(), None
            text = json.dumps(base).replace('"object": ', '"object": ' + inner + ', "x": ', 1)
            return category, text.encode(), None
        if category == "utf8":
            raw = json.dumps(base).encode()
            at = raw.find(b'"uid": "') + 8
            return category, raw[:at] + r.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"]) + raw[at:], None
        if category == "json":
            return category, json.dumps(self.value()).encode(), None
        if category == "numbers":
            text = json.dumps(base).replace(
                '"mode": 420', '"mode": ' + r.choice(["1e999", "-0", "4.2e2", "99" * 40])
            )
            return category, text.encode(), None
        return category, json.dumps(base).encode(), uid


def _uid(body: Any) -> str | None:
    request = body.get("request") if isinstance(body, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    return uid if isinstance(uid, str) else None


# The server, in a process of its own (``--serve DIR``): RSS and liveness are its own.


def serve(cert_dir: Path) -> None:
    from prometheus_client import CollectorRegistry

    from mcosup.http.admission import run_admission_server
    from mcosup.http.tls import CertFileReloader
    from mcosup.runtime.metrics import WebhookMetrics
    from webhooks.facts import ClusterFacts

    facts = ClusterFacts.from_objects(
        pools=[
            {
                "metadata": {"name": "worker", "labels": {names.LAYERING_ENABLED: ""}},
                "spec": {"machineConfigSelector": {"matchLabels": {names.ROLE_LABEL: "worker"}}},
            }
        ]
    )
    tls = CertFileReloader(cert_dir / "tls.crt", cert_dir / "tls.key")

    def started(port: int) -> None:
        (cert_dir / "port.tmp").write_text(str(port))
        os.replace(cert_dir / "port.tmp", cert_dir / "port")

    asyncio.run(
        run_admission_server(
            lambda: facts,
            tls=tls,
            metrics=WebhookMetrics(CollectorRegistry()),
            host="127.0.0.1",
            port=0,
            reload_interval=0.05,
            max_body_bytes=MAX_BODY,
            started=started,
        )
    )


@dataclass
class Pki:
    directory: Path
    ca: certs.CertKeyPair = field(init=False)

    def __post_init__(self) -> None:
        now = dt.datetime.now(dt.UTC)
        self.ca = certs.generate_ca(now=now, validity=dt.timedelta(days=1))
        self.rotate()

    def rotate(self) -> None:
        """A new serving certificate, written as a Secret volume does: the key pair swapped together."""
        pair = certs.issue_serving_cert(
            self.ca, ["localhost", "127.0.0.1"], now=dt.datetime.now(dt.UTC), validity=dt.timedelta(hours=1)
        )
        for name, data in (("tls.key", pair.key_pem), ("tls.crt", pair.cert_pem + self.ca.cert_pem)):
            (self.directory / (name + ".tmp")).write_bytes(data)
        os.replace(self.directory / "tls.key.tmp", self.directory / "tls.key")
        os.replace(self.directory / "tls.crt.tmp", self.directory / "tls.crt")

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca.cert_pem.decode())
        context.check_hostname = False
        return context


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class Report:
    bodies: int = 0
    by_category: collections.Counter[str] = field(default_factory=collections.Counter)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    crashes: list[str] = field(default_factory=list)
    rss_warm_kib: int = 0
    rss_end_kib: int = 0
    rss_curve_kib: list[int] = field(default_factory=list)
    reviews_during_rotation: int = 0
    failed_during_rotation: list[str] = field(default_factory=list)
    rotations: int = 0
    server_alive: bool = False


async def fuzz(url: str, context: ssl.SSLContext, gen: Generator, count: int, report: Report) -> None:
    connector = aiohttp.TCPConnector(ssl=context, limit=8)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        bodies = (gen.body(i) for i in range(count))

        async def worker() -> None:
            for category, body, uid in bodies:
                report.bodies += 1
                report.by_category[category] += 1
                report.outcomes[await _one(session, url, category, body, uid, report)] += 1

        await asyncio.gather(*(worker() for _ in range(8)))


async def _one(
    session: aiohttp.ClientSession, url: str, category: str, body: bytes, uid: str | None, report: Report
) -> str:
    try:
        data = io.BytesIO(body)  # raw bytes this large would make aiohttp warn of a blocked loop
        async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, OSError) as exc:
        if len(body) > MAX_BODY:
            return "over the limit, cut off"
        report.crashes.append(f"{category} ({len(body)} bytes): {type(exc).__name__}: {exc}")
        return "connection error"
    if status == 400:
        return "400"
    if status != 200:
        report.crashes.append(f"{category} ({len(body)} bytes): HTTP {status}: {raw[:200]!r}")
        return f"HTTP {status}"
    try:
        answer = json.loads(raw)
        response = answer["response"]
        if not isinstance(response["allowed"], bool) or (uid is not None and response["uid"] != uid):
            raise ValueError("verdict without allowed, or not echoing the uid")
    except (ValueError, KeyError, TypeError) as exc:
        report.crashes.append(f"{category}: 200 without a verdict ({exc}): {raw[:200]!r}")
        return "200 without a verdict"
    return "verdict"


async def rotation(url: str, pki: Pki, rotations: int, report: Report) -> None:
    stop = asyncio.Event()
    body = json.dumps(valid_reviews("rot")[0]).encode()

    async def client() -> None:
        while not stop.is_set():
            # A new connection per review, so every one does a TLS handshake against the current files.
            connector = aiohttp.TCPConnector(ssl=pki.client_context(), force_close=True)
            try:
                async with aiohttp.ClientSession(connector=connector) as session:
                    async with session.post(url, data=body) as resp:
                        raw = await resp.read()
                        if resp.status != 200 or json.loads(raw)["response"]["uid"] != "rot":
                            report.failed_during_rotation.append(f"HTTP {resp.status}: {raw[:200]!r}")
            except (aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
                report.failed_during_rotation.append(f"{type(exc).__name__}: {exc}")
            report.reviews_during_rotation += 1

    clients = [asyncio.create_task(client()) for _ in range(4)]
    try:
        for _ in range(rotations):
            await asyncio.sleep(0.3)
            pki.rotate()
            report.rotations += 1
        await asyncio.sleep(0.5)  # past the server's 0.05 s reload poll
    finally:
        stop.set()
        await asyncio.gather(*clients)


async def run(bodies: int, rotations: int, seed: int) -> Report:
    report = Report()
    with tempfile.TemporaryDirectory(prefix="webhook-chaos-") as tmp:
        directory = Path(tmp)
        pki = Pki(directory)
        server = await asyncio.create_subprocess_exec(sys.executable, __file__, "--serve", str(directory))
        try:
            async with asyncio.timeout(30):
                while not (directory / "port").exists():
                    if server.returncode is not None:
                        raise RuntimeError(f"the webhook server exited with status {server.returncode}")
                    await asyncio.sleep(0.05)
            url = f"https://127.0.0.1:{(directory / 'port').read_text()}/validate"
            context = pki.client_context()
            gen = Generator(seed)
            warm_up = min(2_000, bodies)
            await fuzz(url, context, gen, warm_up, report)
            report.rss_warm_kib = rss_kib(server.pid)
            sent = warm_up
            while sent < bodies:  # in tenths, so the RSS curve shows whether memory levels off
                chunk = min(max(bodies // 10, 1), bodies - sent)
                await fuzz(url, context, gen, chunk, report)
                sent += chunk
                report.rss_curve_kib.append(rss_kib(server.pid))
            report.rss_end_kib = rss_kib(server.pid)
            await rotation(url, pki, rotations, report)
            report.server_alive = server.returncode is None
        finally:
            if server.returncode is None:
                server.terminate()
            try:
                async with asyncio.timeout(10):
                    await server.wait()
            except TimeoutError:
                server.kill()
                await server.wait()
    return report


def render(report: Report, seed: int) -> str:
    rows = [
        ("bodies sent", f"{report.bodies:,}"),
        *((f"  {name}", f"{n:,}") for name, n in sorted(report.by_category.items())),
        *((f"answer: {name}", f"{n:,}") for name, n in sorted(report.outcomes.items())),
        ("crashes", str(len(report.crashes))),
        (
            "server RSS after warm-up / at the end",
            f"{report.rss_warm_kib / 1024:.1f} / {report.rss_end_kib / 1024:.1f} MiB",
        ),
        ("server RSS after each tenth (MiB)", " ".join(f"{k / 1024:.0f}" for k in report.rss_curve_kib)),
        ("certificate rotations", str(report.rotations)),
        ("reviews during rotation", f"{report.reviews_during_rotation:,}"),
        ("failed reviews during rotation", str(len(report.failed_during_rotation))),
        ("server alive at the end", "yes" if report.server_alive else "NO"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"webhook chaos, seed {seed}"] + [f"  {name:<{width}}  {value}" for name, value in rows]
    for problem in (report.crashes + report.failed_during_rotation)[:20]:
        lines.append(f"  ! {problem}")
    if report.crashes or report.failed_during_rotation or not report.server_alive:
        lines.append(f"replay: python {Path(__file__).as_posix()} --bodies {report.bodies} --seed {seed}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bodies", type=int, default=100_000)
    parser.add_argument("--rotations", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return 0
    report = asyncio.run(run(args.bodies, args.rotations, args.seed))
    print(render(report, args.seed))
    return 1 if report.crashes or report.failed_during_rotation or not report.server_alive else 0


if __name__ == "__main__":
    sys.exit(main())
