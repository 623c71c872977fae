#!/usr/bin/env python3
"""Two backstops side by side: CPU per request at 32 connections, A/B.

    bench/ab.py OLD_BINARY NEW_BINARY [--rounds 8] [--seconds 4]
    bench/ab.py BINARY BINARY --extra-new journal.toml    # what a feature costs

Whether a change made plain proxying dearer (two binaries), or what a feature costs
(one binary twice, `--extra-new` holding keys added after the upstream table, e.g. a
`[journal]` table, as `bench/callgrind`'s CALLGRIND_CONFIG), answered without the full
bench and more precisely: only two processes take turns, so the rounds are close
together. Both serve the same `backstop mock-upstream` (NEW's, on CPU 0), pinned to
CPU 1 (`$TMP` in an extra file is the run's temporary directory); wrk (one thread, 32 connections, bench/post.lua) on CPU 0
loads them in alternating order (A B, B A, ...). Per round it prints each one's CPU
seconds per 10k requests (utime + stime from /proc) and NEW / OLD; at the end the
median of the same-round ratios, the figure to quote (host noise moves both within a
round). Needs wrk and taskset (bench/run installs them). Every process it starts is
stopped when it exits.
"""

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile

from bench import cpu_seconds, wait_port  # the full bench's own helpers

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", help="binary A (the baseline)")
    ap.add_argument("new", help="binary B (the change)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--extra-old", help="TOML appended to OLD's config (after its [[upstream]])")
    ap.add_argument("--extra-new", help="TOML appended to NEW's config (after its [[upstream]])")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="backstop-ab-")
    procs = []
    try:
        up = free_port()
        procs.append(subprocess.Popen(
            ["taskset", "-c", "0", a.new, "mock-upstream", "--listen", f"127.0.0.1:{up}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs[-1].bench_name = "mock-upstream"
        wait_port(up, procs[-1])
        proxies = {}
        for name, binary, extra in (("old", a.old, a.extra_old), ("new", a.new, a.extra_new)):
            port, admin = free_port(), free_port()
            conf = os.path.join(tmp, f"{name}.toml")
            with open(conf, "w") as f:
                f.write(f'listen = "127.0.0.1:{port}"\nadmin_listen = "127.0.0.1:{admin}"\n'
                        f'[failure_log]\ndir = "{tmp}/failures-{name}"\n'
                        f'[[upstream]]\nname = "bench"\nbase_url = "http://127.0.0.1:{up}"\n')
                if extra:
                    f.write(open(extra).read().replace("$TMP", tmp) + "\n")
            p = subprocess.Popen(["taskset", "-c", "1", binary, "serve", "--config", conf],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            p.bench_name = f"backstop ({name})"
            procs.append(p)
            wait_port(port, p)
            proxies[name] = (port, p.pid)
        per_10k = {"old": [], "new": []}
        for r in range(a.rounds):
            for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
                port, pid = proxies[name]
                before = cpu_seconds([pid])
                out = subprocess.run(
                    ["taskset", "-c", "0", "wrk", "-t1", "-c32", f"-d{a.seconds}s", "-s",
                     os.path.join(HERE, "post.lua"), f"http://127.0.0.1:{port}/v1/chat/completions"],
                    capture_output=True, text=True, timeout=a.seconds + 30).stdout
                m = re.search(r"(\d+) requests in", out)
                if not m or int(m.group(1)) == 0:
                    sys.exit(f"ab: wrk got nothing from {name}:\n{out}")
                per_10k[name].append((cpu_seconds([pid]) - before) / int(m.group(1)) * 1e4)
            old, new = per_10k["old"][-1], per_10k["new"][-1]
            print(f"round {r + 1}: old {old:.3f}  new {new:.3f} CPU-s per 10k requests  "
                  f"new/old {new / old:.3f}", flush=True)
        ratios = [n / o for o, n in zip(per_10k["old"], per_10k["new"])]
        print(f"new / old, CPU per request at 32 connections: {statistics.median(ratios):.3f} "
              f"(median of {len(ratios)} same-round ratios, {min(ratios):.3f}-{max(ratios):.3f})")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
