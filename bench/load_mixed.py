"""Mixed load against a running `ibex serve`, and the cost of 1,000 slow connections.

Driven by bench/load_mixed.sh (which builds, indexes and starts the server). Standard library
only: asyncio with a small HTTP/1.1 keep-alive client, so the measurement does not depend on a
client package's version.

Phase 1, mixed load for DURATION seconds at saturation: search workers (BM25, dense and hybrid
in turn, over the Cranfield queries), one writer (upserts that add and replace documents, and
deletes), and one embedded-LLM answer every ANSWER_EVERY seconds. Reports per operation:
requests, statuses, p50/p99; the server's RSS every 10 s (minutes 1 and 10 are quoted); and the
count of 5xx responses other than the documented 503 (busy, locked) and 507 (disk full).

Phase 2, slow connections: the same hybrid searches from SEARCHERS clients for WINDOW seconds
alone, then again while SLOW connections are held open (half idle after connecting, half
trickling a request body one byte every two seconds, reopened when the server closes them).
Reports both latencies and their ratio.
"""

import argparse
import asyncio
import gzip
import json
import random
import time

MODES = ["bm25", "dense", "hybrid"]
DOCUMENTED_5XX = {503, 507}


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects after an error or a close."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, method, path, body=None):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        try:
            self.writer.write(head.encode() + data)
            await self.writer.drain()
            return await self._response()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.close()
            raise

    async def _response(self):
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        headers = {}
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        else:
            body = await self.reader.read()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Recorder:
    """Latencies and statuses per operation."""

    def __init__(self):
        self.latencies = {}
        self.statuses = {}
        self.client_errors = {}

    def add(self, op, status, seconds):
        self.latencies.setdefault(op, []).append(seconds)
        counts = self.statuses.setdefault(op, {})
        counts[status] = counts.get(status, 0) + 1

    def error(self, op, what):
        key = (op, what)
        self.client_errors[key] = self.client_errors.get(key, 0) + 1


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(conn, recorder, op, method, path, body=None):
    started = time.perf_counter()
    try:
        status, _ = await conn.request(method, path, body)
    except (ConnectionError, asyncio.IncompleteReadError) as e:
        recorder.error(op, type(e).__name__)
        return None
    recorder.add(op, status, time.perf_counter() - started)
    return status


async def searcher(args, queries, recorder, deadline, modes):
    conn = Connection(args.host, args.port)
    i = random.randrange(len(queries))
    while time.monotonic() < deadline:
        mode = modes[i % len(modes)]
        body = {"query": queries[i % len(queries)], "mode": mode, "top_k": 10}
        await timed(conn, recorder, f"search {mode}", "POST", f"/v1/indexes/{args.index}/search", body)
        i += 1
    conn.close()


async def writer(args, texts, recorder, deadline):
    conn = Connection(args.host, args.port)
    i = 0
    while time.monotonic() < deadline:
        if i % 5 == 4:
            ids = [f"load-{(i - 2) % args.write_ids}"]
            await timed(conn, recorder, "delete", "POST",
                        f"/v1/indexes/{args.index}/documents/delete", {"ids": ids})
        else:
            doc = {"id": f"load-{i % args.write_ids}", "title": f"load run {i}",
                   "text": texts[i % len(texts)]}
            await timed(conn, recorder, "upsert", "POST",
                        f"/v1/indexes/{args.index}/documents", [doc])
        i += 1
    conn.close()


async def answerer(args, queries, recorder, deadline):
    conn = Connection(args.host, args.port)
    i = 0
    while time.monotonic() < deadline:
        started = time.monotonic()
        body = {"question": queries[i % len(queries)], "max_tokens": 32}
        await timed(conn, recorder, "answer", "POST", f"/v1/indexes/{args.index}/answer", body)
        i += 1
        await asyncio.sleep(max(0.0, args.answer_every - (time.monotonic() - started)))
    conn.close()


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def sampler(args, samples, deadline, started):
    while True:
        samples.append((time.monotonic() - started, rss_mib(args.server_pid)))
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(10, max(0.0, deadline - time.monotonic())))


def report(recorder, title):
    print(f"\n{title}")
    print("| operation | requests | statuses | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for op in sorted(recorder.latencies):
        values = recorder.latencies[op]
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(recorder.statuses[op].items()))
        print(f"| {op} | {len(values)} | {statuses} | {percentile(values, 0.5) * 1000:.1f} | "
              f"{percentile(values, 0.99) * 1000:.1f} |")
    for (op, what), n in sorted(recorder.client_errors.items()):
        print(f"client-side errors: {op}: {what} x{n}")
    bad = sum(n for counts in recorder.statuses.values() for s, n in counts.items()
              if s >= 500 and s not in DOCUMENTED_5XX)
    print(f"5xx other than 503/507: {bad}")
    return bad


async def mixed_phase(args, queries, texts):
    recorder = Recorder()
    samples = []
    started = time.monotonic()
    deadline = started + args.duration
    tasks = [searcher(args, queries, recorder, deadline, MODES[k % 3:] + MODES[:k % 3])
             for k in range(args.searchers)]
    tasks += [writer(args, texts, recorder, deadline), answerer(args, queries, recorder, deadline),
              sampler(args, samples, deadline, started)]
    await asyncio.gather(*tasks)
    seconds = time.monotonic() - started
    total = sum(len(v) for v in recorder.latencies.values())
    bad = report(recorder, f"Mixed load: {args.duration:.0f} s, {args.searchers} searchers, "
                           f"1 writer, an answer every {args.answer_every:.0f} s: "
                           f"{total} requests, {total / seconds:.1f} per second")
    print("\nserver RSS (MiB) every 10 s: " + ", ".join(f"{t:.0f}s {m:.0f}" for t, m in samples))
    for minute in (1, 5, 10):
        near = [m for t, m in samples if abs(t - 60 * minute) <= 6]
        if near:
            print(f"RSS at minute {minute}: {near[0]:.0f} MiB")
    return bad


async def search_window(args, queries, seconds):
    recorder = Recorder()
    deadline = time.monotonic() + seconds
    await asyncio.gather(*[searcher(args, queries, recorder, deadline, ["hybrid"])
                           for _ in range(args.window_searchers)])
    values = recorder.latencies.get("search hybrid", [])
    ok = recorder.statuses.get("search hybrid", {}).get(200, 0)
    return recorder, values, ok


async def slow_client(args, index, held, closed, stop):
    """Holds one connection open: idle (even index) or trickling a body (odd index)."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(args.host, args.port)
        except OSError:
            closed["connect failed"] = closed.get("connect failed", 0) + 1
            await asyncio.sleep(1)
            continue
        held.add(index)
        try:
            if index % 2 == 1:
                writer.write(
                    f"POST /v1/indexes/{args.index}/search HTTP/1.1\r\nHost: x\r\n"
                    "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode())
                await writer.drain()
            while not stop.is_set():
                if index % 2 == 1:
                    writer.write(b" ")
                    await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(4096), timeout=2)
                    if not data:
                        closed["closed by server"] = closed.get("closed by server", 0) + 1
                        break
                    closed["answered"] = closed.get("answered", 0) + 1
                    break
                except asyncio.TimeoutError:
                    pass
        except (ConnectionError, OSError):
            closed["reset"] = closed.get("reset", 0) + 1
        finally:
            held.discard(index)
            writer.close()


async def slow_phase(args, queries):
    print(f"\nSlow connections: {args.window_searchers} hybrid searchers for {args.window:.0f} s, "
          f"alone and beside {args.slow} slow connections")
    alone, alone_values, alone_ok = await search_window(args, queries, args.window)
    held, closed, stop = set(), {}, asyncio.Event()
    clients = [asyncio.create_task(slow_client(args, i, held, closed, stop))
               for i in range(args.slow)]
    # Synchronize on what can be observed: every slow connection is open.
    for _ in range(600):
        if len(held) >= args.slow:
            break
        await asyncio.sleep(0.1)
    opened = len(held)
    beside, beside_values, beside_ok = await search_window(args, queries, args.window)
    still_held = len(held)
    stop.set()
    await asyncio.gather(*clients, return_exceptions=True)
    print("| | searches (200) | QPS | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for name, values, ok in [("alone", alone_values, alone_ok),
                             (f"beside {args.slow} slow connections", beside_values, beside_ok)]:
        print(f"| {name} | {ok} | {ok / args.window:.1f} | {percentile(values, 0.5) * 1000:.1f} | "
              f"{percentile(values, 0.99) * 1000:.1f} |")
    print(f"slow connections open when the window started: {opened}, when it ended: {still_held}; "
          f"outcomes: {closed or 'none closed'}")
    ratio50 = percentile(beside_values, 0.5) / percentile(alone_values, 0.5)
    ratio99 = percentile(beside_values, 0.99) / percentile(alone_values, 0.99)
    print(f"delay ratio (beside / alone): p50 {ratio50:.2f}x, p99 {ratio99:.2f}x")
    bad = report(alone, "alone, statuses") + report(beside, "beside the slow connections, statuses")
    return bad


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--index", default="cranfield")
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--searchers", type=int, default=8)
    parser.add_argument("--answer-every", type=float, default=30)
    parser.add_argument("--write-ids", type=int, default=200)
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--window", type=float, default=30)
    parser.add_argument("--window-searchers", type=int, default=4)
    parser.add_argument("--phases", default="mixed,slow")
    args = parser.parse_args()
    queries = [json.loads(line)["text"] for line in open(args.queries)]
    texts = []
    opener = gzip.open if args.corpus.endswith(".gz") else open
    with opener(args.corpus, "rt") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) >= 500:
                break
    bad = 0
    if "mixed" in args.phases:
        bad += await mixed_phase(args, queries, texts)
    if "slow" in args.phases:
        bad += await slow_phase(args, queries)
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    asyncio.run(main())
