"""SSE measurements over raw asyncio sockets (stdlib only).

probe(): one streamed chat completion, timed: request sent -> response headers,
-> first SSE event, and the largest gap between two events.
hold(): open many streams at once, keep them open, sample the proxy's RSS.
Every loop is bounded by a count and a deadline.
"""

import asyncio
import time

BODY = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'


def request(port):
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\n"
        b"Content-Type: application/json\r\n"
        b"Authorization: Bearer sk-bench\r\n"
        b"Accept: text/event-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % (port, len(BODY))
    ) + BODY


async def _probe(port, timeout):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        t0 = time.perf_counter()
        writer.write(request(port))
        await writer.drain()
        buf, t_head, events, times = b"", None, 0, []
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            data = await asyncio.wait_for(reader.read(65536), deadline - time.perf_counter())
            if not data:
                break
            now = time.perf_counter()
            buf += data
            if t_head is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    continue
                t_head = now
                status = buf[9:12]
                buf = buf[end + 4:]
            new = buf.count(b"data:")
            if new:
                events += new
                times.append(now)
                buf = buf[buf.rfind(b"data:") + 5:]
            if b"[DONE]" in buf or b"\r\n0\r\n\r\n" in buf or buf.startswith(b"0\r\n\r\n"):
                break
        if t_head is None or not times:
            raise RuntimeError(f"no stream from port {port}")
        gaps = [b - a for a, b in zip(times, times[1:])]
        return {
            "status": int(status),
            "headers_ms": (t_head - t0) * 1e3,
            "first_event_ms": (times[0] - t0) * 1e3,
            "max_gap_ms": max(gaps) * 1e3 if gaps else 0.0,
            "events": events,
            "total_ms": (times[-1] - t0) * 1e3,
        }
    finally:
        writer.close()


def probe(port, timeout=10.0):
    return asyncio.run(_probe(port, timeout))


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


async def _hold(port, n, pids, open_timeout, parallel):
    opened, failed = 0, 0
    stop = asyncio.Event()
    sem = asyncio.Semaphore(parallel)
    marks = {}  # streams open -> RSS KiB, sampled at n/2 and n

    async def one():
        nonlocal opened, failed
        writer = None
        try:
            async with sem:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request(port))
                await writer.drain()
                got = b""
                while b"data:" not in got and len(got) < 65536:
                    data = await reader.read(4096)
                    if not data:
                        raise ConnectionError("closed before the first event")
                    got += data
                if not got.startswith(b"HTTP/1.1 200"):
                    raise ConnectionError(got[:40])
            opened += 1
            if opened in (n // 2, n):
                marks[opened] = rss_kib(pids)
            while not stop.is_set():  # keep reading the few events that trickle in
                if not await reader.read(4096):
                    break
        except (OSError, ConnectionError, asyncio.TimeoutError):
            failed += 1
        finally:
            if writer is not None:
                writer.close()

    before = rss_kib(pids)
    tasks = [asyncio.create_task(one()) for _ in range(n)]
    t0 = time.monotonic()
    while opened + failed < n and time.monotonic() - t0 < open_timeout:
        await asyncio.sleep(0.2)
    open_s = time.monotonic() - t0
    await asyncio.sleep(2.0)  # let the proxy settle with every stream open
    held = opened
    at_full = rss_kib(pids)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(2.0)
    return {
        "asked": n, "open": held, "failed": failed, "open_seconds": round(open_s, 1),
        "rss_before_kib": before, "rss_open_kib": at_full, "rss_half_kib": marks.get(n // 2),
        "rss_after_close_kib": rss_kib(pids),
    }


def hold(port, n, pids, open_timeout=90.0, parallel=200):
    return asyncio.run(_hold(port, n, pids, open_timeout, parallel))
