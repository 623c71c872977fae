#!/usr/bin/env python3
"""Two backstops side by side: CPU per request at 32 connections, A/B.

    bench/ab.py OLD_BINARY NEW_BINARY [--rounds 8] [--seconds 4]
    bench/ab.py BINARY BINARY --extra-new journal.toml    # what a feature costs
    bench/ab.py ... --upstream nginx    # the full bench's JSON upstream (811 B answers)
    bench/ab.py BIN BIN --extra-new journal.toml --perf 'journal|request_meta|sha2'
                                        # and where each one's CPU went, natively

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

With --perf REGEX both are also sampled by `perf record -e cpu-clock` (999 Hz, kernel
included; needs the `perf` tool, a perf_event_paranoid that lets root sample, and
binaries with their symbols: `CARGO_PROFILE_RELEASE_STRIP=false cargo build --release`) for
the whole run, and at the end it prints, for each, the share of its samples in
functions whose names match REGEX and the largest of them: what a feature's own code
costs natively, which the CPU ratio (a few points, within the host's noise) cannot
resolve. Code only: what the feature makes others do (allocations, copies, the kernel's
writes) is not in the share.
"""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile

import bench  # the full bench's own helpers
from bench import cpu_seconds, wait_port

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
    ap.add_argument("--upstream", choices=["mock", "nginx"], default="mock",
                    help="mock: `backstop mock-upstream` (short answers); nginx: the full "
                    "bench's JSON upstream, bench/completion.json")
    ap.add_argument("--perf", metavar="REGEX",
                    help="sample both with perf; print the share of samples in functions matching REGEX")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="backstop-ab-")
    procs = []
    try:
        up = free_port()
        if a.upstream == "nginx":
            bench.UP["json"] = up
            d, conf = bench.nginx_conf(tmp, "upstream-nginx", bench.upstream_nginx_body())
            command = ["nginx", "-p", d, "-c", conf, "-e", f"{d}/logs/error.log"]
        else:
            command = [a.new, "mock-upstream", "--listen", f"127.0.0.1:{up}"]
        procs.append(subprocess.Popen(["taskset", "-c", "0"] + command,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs[-1].bench_name = a.upstream
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
        samplers = {name: sample(pid, os.path.join(tmp, f"{name}.perf"))
                    for name, (_, pid) in proxies.items()} if a.perf else {}
        procs.extend(samplers.values())
        per_10k = {"old": [], "new": []}
        split = {"old": [], "new": []}  # user, system CPU-s per 10k requests
        for r in range(a.rounds):
            for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
                port, pid = proxies[name]
                before = cpu_seconds([pid])
                user_sys = user_and_system(pid)
                out = subprocess.run(
                    ["taskset", "-c", "0", "wrk", "-t1", "-c32", f"-d{a.seconds}s", "-s",
                     os.path.join(HERE, "post.lua"), f"http://127.0.0.1:{port}/v1/chat/completions"],
                    capture_output=True, text=True, timeout=a.seconds + 30).stdout
                m = re.search(r"(\d+) requests in", out)
                if not m or int(m.group(1)) == 0:
                    sys.exit(f"ab: wrk got nothing from {name}:\n{out}")
                per_10k[name].append((cpu_seconds([pid]) - before) / int(m.group(1)) * 1e4)
                spent = [after - b for after, b in zip(user_and_system(pid), user_sys)]
                split[name].append([s / int(m.group(1)) * 1e4 for s in spent])
            old, new = per_10k["old"][-1], per_10k["new"][-1]
            print(f"round {r + 1}: old {old:.3f}  new {new:.3f} CPU-s per 10k requests  "
                  f"new/old {new / old:.3f}", flush=True)
        ratios = [n / o for o, n in zip(per_10k["old"], per_10k["new"])]
        print(f"new / old, CPU per request at 32 connections: {statistics.median(ratios):.3f} "
              f"(median of {len(ratios)} same-round ratios, {min(ratios):.3f}-{max(ratios):.3f})")
        for name in ("old", "new"):
            user = statistics.median(u for u, _ in split[name])
            system = statistics.median(s for _, s in split[name])
            print(f"{name}: user {user:.3f}, system {system:.3f} CPU-s per 10k requests (medians)")
        for name, sampler in samplers.items():
            sampler.send_signal(signal.SIGINT)  # perf writes its file and exits
            sampler.wait(timeout=60)
            share, top = matching_share(os.path.join(tmp, f"{name}.perf"), a.perf)
            print(f"{name}: {share:.2f} % of samples in functions matching {a.perf!r}")
            for pct, symbol in top:
                print(f"    {pct:5.2f} %  {symbol}")
    finally:
        for p in procs:
            # SIGTERM: nginx's master stops its worker (killed, it would leave it running).
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        subprocess.run(["rm", "-rf", tmp])


def sample(pid, out):
    """perf sampling `pid` (all its threads, kernel included) into `out` until SIGINT."""
    p = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-p", str(pid),
                          "-o", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p.bench_name = f"perf {pid}"
    return p


def matching_share(data, pattern, top=8):
    """Percent of the samples in `data` in functions matching `pattern`, and the `top`
    largest of those functions as (percent, name)."""
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", "sym"],
                         capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[[.k]\]\s+(.*)$", line)
        if m and re.search(pattern, m.group(2)):
            found.append((float(m.group(1)), m.group(2).strip()[:110]))
    found.sort(reverse=True)
    return sum(p for p, _ in found), found[:top]


def user_and_system(pid):
    """utime and stime of `pid` in seconds (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


if __name__ == "__main__":
    main()
