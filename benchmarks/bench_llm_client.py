"""LLM client under load: N requests at concurrency C against the loopback OpenAI server with injected latency.

The server (tests/openai_server.py: by default the event-loop server; ``--server threaded`` for the
fault-injecting one, a thread per connection, which is itself the bottleneck at this load) runs in its
own process and answers every request after ``--latency`` seconds. The ideal wall time is ``N * latency / C``; the target is within
1.25x of it. Memory must stay flat: the client's resident memory is sampled after a warm-up round and
after each measured round, and the peak RSS is printed before and after.

    python benchmarks/bench_llm_client.py [--requests 500] [--concurrency 64] [--latency 0.2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KEY_ENV = "SB_BENCH_LLM_KEY"


def serve(conn: Connection, latency: float, server: str) -> None:
    """Child process: the loopback server; sends its URL, then on request its peak concurrency."""
    from tests.openai_server import EventLoopLoopbackServer, OpenAILoopbackServer, canned_generator

    answer = canned_generator(lambda q: f"echo {q[-40:]}")
    if server == "threaded":
        with OpenAILoopbackServer(canned_generator(lambda q: f"echo {q[-40:]}", delay_s=latency)) as srv:
            conn.send(srv.base_url)
            while conn.recv() == "stats":
                with srv.state.lock:
                    conn.send((srv.state.max_in_flight, len(srv.state.bodies)))
                    srv.state.max_in_flight = 0
        return
    with EventLoopLoopbackServer(answer, latency_s=latency) as ev:
        conn.send(ev.base_url)
        while conn.recv() == "stats":
            conn.send((ev.max_in_flight, ev.served))
            ev.max_in_flight = 0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_round(backend: object, n: int, tag: str) -> tuple[float, float]:
    """Wall and client CPU seconds for ``n`` requests."""
    from shepherd_bench.backends.base import GenRequest, Message

    reqs = [GenRequest((Message("user", f"{tag} request {i}: say something short"),), max_tokens=16)
            for i in range(n)]
    t0, c0 = time.perf_counter(), time.process_time()
    res = backend.generate(reqs)  # type: ignore[attr-defined]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    bad = [r.error for r in res if not r.ok]
    if bad:
        raise SystemExit(f"{len(bad)} requests failed, e.g. {bad[0]}")
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--rounds", type=int, default=3, help="measured rounds (memory is compared across them)")
    ap.add_argument("--quick", action="store_true", help="2 measured rounds")
    ap.add_argument("--server", default="event-loop", choices=["event-loop", "threaded"],
                    help="loopback server: one asyncio loop (default), or the fault-injecting server's "
                    "thread per connection, which is itself the bottleneck at this load")
    a = ap.parse_args()
    rounds = 2 if a.quick else a.rounds

    from shepherd_bench.backends.openai_compat import OpenAICompatBackend, OpenAISettings

    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(target=serve, args=(child, a.latency, a.server), daemon=True)
    proc.start()
    base_url = parent.recv()
    os.environ[KEY_ENV] = "bench"
    backend = OpenAICompatBackend("loopback", OpenAISettings(base_url=base_url, api_key_env=KEY_ENV,
                                                              concurrency=a.concurrency, max_retries=0))
    one_round(backend, a.concurrency, "warm-up")
    parent.send("stats")
    parent.recv()
    peak_before, rss_before = peak_rss_mb(), rss_mb()
    walls, cpus, rss = [], [], []
    for r in range(rounds):
        wall, cpu = one_round(backend, a.requests, f"round {r}")
        walls.append(wall)
        cpus.append(cpu)
        rss.append(rss_mb())
    parent.send("stats")
    server_peak, served = parent.recv()
    parent.send("stop")
    proc.join(5)

    ideal = a.requests * a.latency / a.concurrency
    best = min(walls)
    ratio = best / ideal
    print(f"{a.server} server: {a.requests} requests x {rounds} rounds at concurrency {a.concurrency}, {a.latency * 1000:.0f} ms "
          f"injected latency; server saw {served} requests, at most {server_peak} at once")
    print("round walls    " + "  ".join(f"{w:.2f}s" for w in walls) + f"  (ideal {ideal:.3f}s)")
    cpu_ms = 1000 * min(cpus) / a.requests
    print(f"client CPU     {cpu_ms:.2f} ms per request (one event loop: at most {1000 / cpu_ms:.0f} requests/s, "
          f"so wall/ideal >= {a.requests * cpu_ms / 1000 / ideal:.2f} on this CPU whatever the concurrency)")
    print(f"RSS            after warm-up {rss_before:.1f} MB; after rounds " + ", ".join(f"{x:.1f}" for x in rss)
          + f" MB; growth {rss[-1] - rss_before:+.1f} MB")
    print(f"peak RSS       before {peak_before:.1f} MB, after {peak_rss_mb():.1f} MB")
    print(f"wall/ideal = {ratio:.3f} (target <= 1.25: {'met' if ratio <= 1.25 else 'NOT met'})")
    print(f"memory growth = {rss[-1] - rss_before:+.1f} MB over {rounds} rounds")


if __name__ == "__main__":
    main()
