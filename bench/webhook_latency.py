"""Admission webhook throughput and latency over TLS, against a bare aiohttp TLS handler.

Usage: ``.venv/bin/python bench/webhook_latency.py [--seconds 6]``

Each server runs in its own process (so the client does not share its event loop or GIL) and is fed a
realistic 300-file MachineConfig CREATE review for a layered pool over keep-alive TLS connections, as
the API server does, at concurrency 1 and 32. The bare handler only parses the body and answers
allowed; mcosup's runs the full policy (Ignition validation, every data URL checked, layered checks).
Targets (issue 8): throughput >= 0.7x the bare handler's, p99 < 20 ms at concurrency 32.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import random
import ssl
import statistics
import string
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import _summary
import aiohttp
import orjson
import trustme

from mcosup.model import names

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "webhooks"))
from webhook_support import admission_review  # the tests' AdmissionReview builder

CONCURRENCIES = (1, 32)


def machineconfig_review(files: int = 300, max_file_bytes: int = 1500, seed: int = 8) -> bytes:
    """A CREATE review of a MachineConfig with ``files`` config files (100 B to ``max_file_bytes``) and units.

    Sizes follow what MachineConfigs carry: mostly small config files, a handful of units.
    """
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + " =_-.#\n"
    entries = []
    for i in range(files):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(100, max_file_bytes))).encode()
        source = "data:;base64," + base64.b64encode(text).decode()
        if i % 5 == 0:  # some percent-encoded ones, as butane writes small files
            source = "data:," + "".join(f"%{b:02X}" if chr(b) in " =#\n" else chr(b) for b in text[:400])
        entries.append(
            {
                "path": f"/etc/app{i % 17}/conf.d/{i:03d}-setting.conf",
                "mode": 420,
                "overwrite": True,
                "contents": {"source": source},
            }
        )
    units = [
        {
            "name": f"app{i}.service",
            "enabled": True,
            "contents": f"[Unit]\nDescription=app {i}\n[Service]\nExecStart=/usr/bin/app{i}\n"
            "[Install]\nWantedBy=multi-user.target\n",
            "dropins": [{"name": "10-env.conf", "contents": "[Service]\nEnvironment=A=1\n"}],
        }
        for i in range(10)
    ]
    mc = {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfig",
        "metadata": {"name": "50-workers-app", "labels": {names.ROLE_LABEL: "worker"}},
        "spec": {
            "config": {
                "ignition": {"version": "3.4.0"},
                "storage": {"files": entries},
                "systemd": {"units": units},
            },
            "kernelArguments": ["nosmt"],
        },
    }
    review = admission_review("MachineConfig", mc, uid="00000000-0000-0000-0000-000000000001")
    return orjson.dumps(review)


def layered_worker_facts() -> Any:
    """Cluster facts with one layered pool, worker, which selects the benchmark's MachineConfig."""
    from webhooks.facts import ClusterFacts

    return ClusterFacts.from_objects(
        pools=[
            {
                "metadata": {"name": "worker", "labels": {names.LAYERING_ENABLED: ""}},
                "spec": {"machineConfigSelector": {"matchLabels": {names.ROLE_LABEL: "worker"}}},
            }
        ]
    )


def in_process_costs(body: bytes) -> tuple[float, float]:
    """Microseconds to parse one review, and to parse and judge it, with no server around (best of 5)."""
    from webhooks.policy import review
    from webhooks.review import parse_review

    facts = layered_worker_facts()
    runs = 200

    def best(call: Any) -> float:
        return min(timeit.repeat(call, number=runs, repeat=5)) / runs * 1e6

    return best(lambda: parse_review(body)), best(lambda: review(parse_review(body), facts))


def _serve(kind: str, cert: str, key: str, ready: Any) -> None:
    """Server process body: bind 127.0.0.1:0, report the port, serve until terminated."""
    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from mcosup.http.admission import admission_app
    from mcosup.http.tls import CertFileReloader
    from mcosup.runtime.metrics import WebhookMetrics

    async def main() -> None:
        tls = CertFileReloader(cert, key)
        if kind == "bare":

            async def handle(request: web.Request) -> web.Response:
                review = orjson.loads(await request.read())
                answer = {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "response": {"uid": review["request"]["uid"], "allowed": True},
                }
                return web.Response(body=orjson.dumps(answer), content_type="application/json")

            app = web.Application(client_max_size=8 * 1024 * 1024)
            app.router.add_post("/validate", handle)
        else:
            facts = layered_worker_facts()
            app = admission_app(lambda: facts, metrics=WebhookMetrics(CollectorRegistry()))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.context, backlog=512)
        await site.start()
        ready.put(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


async def _load(
    port: int, context: ssl.SSLContext, body: bytes, concurrency: int, seconds: float
) -> list[float]:
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(ssl=context, limit=concurrency)
    url = f"https://127.0.0.1:{port}/validate"
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> float:
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                raw = await resp.read()
            if resp.status != 200 or not orjson.loads(raw)["response"]["allowed"]:
                raise RuntimeError(f"unexpected answer {resp.status}: {raw[:200]!r}")
            return time.perf_counter() - started

        for _ in range(max(concurrency, 8)):  # warm up connections and caches
            await one()
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                latencies.append(await one())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def _figures(latencies: list[float], seconds: float) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return len(ordered) / seconds, statistics.median(ordered) * 1000, p99 * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time of one run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per server; the best counts")
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument(
        "--max-file-bytes", type=int, default=1500, help="largest file (sizes are uniform from 100)"
    )
    args = parser.parse_args()

    body = machineconfig_review(args.files, args.max_file_bytes)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    # On a shared machine a neighbour's burst can halve one run: runs alternate between the two
    # servers and each keeps its best round (highest throughput), so both see the same conditions.
    results: dict[tuple[str, int], tuple[float, float, float]] = {}
    spawn = multiprocessing.get_context("spawn")
    servers: dict[str, Any] = {}
    ports: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        try:
            for kind in ("bare", "mcosup"):
                ready = spawn.Queue()
                servers[kind] = spawn.Process(
                    target=_serve, args=(kind, str(cert), str(key), ready), daemon=True
                )
                servers[kind].start()
                ports[kind] = ready.get(timeout=30)
            for concurrency in CONCURRENCIES:
                for _ in range(args.rounds):
                    for kind in ("bare", "mcosup"):
                        latencies = asyncio.run(
                            _load(ports[kind], client_context, body, concurrency, args.seconds)
                        )
                        figures = _figures(latencies, args.seconds)
                        if figures[0] > results.get((kind, concurrency), (0.0, 0.0, 0.0))[0]:
                            results[(kind, concurrency)] = figures
        finally:
            for server in servers.values():
                server.terminate()
                server.join(10)

    load = os.getloadavg()[0]
    print(
        f"webhook latency over TLS: {args.files}-file MachineConfig review, {len(body) / 1024:.0f} KiB body, "
        f"{os.cpu_count()} CPUs (load {load:.1f}), best of {args.rounds} x {args.seconds:.0f} s runs"
    )
    print(f"{'server':<8} {'conc':>4} {'reviews/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for concurrency in CONCURRENCIES:
        for kind in ("bare", "mcosup"):
            rate, p50, p99 = results[(kind, concurrency)]
            print(f"{kind:<8} {concurrency:>4} {rate:>10.1f} {p50:>8.2f} {p99:>8.2f}")
    for concurrency in CONCURRENCIES:
        ratio = results[("mcosup", concurrency)][0] / results[("bare", concurrency)][0]
        print(f"throughput ratio mcosup/bare at concurrency {concurrency}: {ratio:.2f}x (target >= 0.70x)")
        _summary.record(
            "webhook_latency",
            f"webhook reviews/s ÷ bare aiohttp handler, concurrency {concurrency}",
            ratio,
            ">= 0.7",
            ratio >= 0.7,
        )
    p99_32 = results[("mcosup", 32)][2]
    print(f"p99 at concurrency 32: {p99_32:.2f} ms (target < 20 ms)")
    _summary.record(
        "webhook_latency", "webhook p99 latency, concurrency 32", p99_32, "< 20 ms", p99_32 < 20, "ms"
    )
    parse_us, judged_us = in_process_costs(body)
    print(
        f"in one process, no server: parsing {parse_us:.0f} us, parsing and judging {judged_us:.0f} us per "
        f"review (the policy's own cost: {judged_us - parse_us:.0f} us)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
