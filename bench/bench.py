#!/usr/bin/env python3
"""backstop benchmark: direct vs nginx vs hyper-floor vs backstop, interleaved, one report.

Started by bench/run (which installs the tools and builds the binaries). hyper-floor
(examples/hyper_floor.rs) is the minimal proxy on backstop's HTTP stack: it shows how
much of backstop's cost is that stack and how much is backstop's own. Every process
listens on 127.0.0.1; the proxies are pinned to PROXY_CPUS, everything else (upstreams,
wrk, this script) to LOAD_CPUS. See docs/benchmarks.md for what each number means.
"""

import argparse
import atexit
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import report
import sse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TICK = os.sysconf("SC_CLK_TCK")
FLOOR = "hyper-floor"
JOURNAL = "backstop-journal"            # [journal], metadata only
JOURNAL_RESP = "backstop-journal-responses"  # [journal] responses = true
JOURNALS = {JOURNAL: "", JOURNAL_RESP: "responses = true\n"}
JOURNAL_KINDS = ["json", "sse"]
# One upstream with a requests_per_minute limit (high: nothing is refused or queued),
# kept locally vs shared through a local redis-server (SPEC §8): the price of [redis].
RPM_LOCAL = "backstop-rpm-local"
RPM_REDIS = "backstop-rpm-redis"
LIMITED = {RPM_LOCAL: False, RPM_REDIS: True}  # name -> shared through Redis
LIMIT_KEYS = "requests_per_minute = 60000000\n"
REDIS_PORT = 18090
REPLAY = "backstop-replay"  # [replay]; its wrk requests share one Idempotency-Key (replay.lua)
# A direct call to `backstop mock-upstream` answering JSON: what a replay is measured against
# (its own phase, not a contestant: the mock is an upstream, not a proxy). It runs on the
# proxies' CPU, like backstop.
DIRECT_MOCK = "direct-mock"
MOCK_JSON_PORT = 18085
FEATURES = list(JOURNALS) + list(LIMITED) + [REPLAY]  # json + sse only, no failure path
CONTESTANTS = ["direct", "nginx", FLOOR, "backstop", JOURNAL, JOURNAL_RESP, RPM_LOCAL, RPM_REDIS,
               REPLAY]  # FLOOR is dropped if not built
# Ports: upstreams 1808x, nginx proxy 1818x, backstop 1828x (admin 1928x), hyper-floor
# 1838x. x = 1 JSON (upstream nginx), 2 SSE mock, 3 failing mock, 4 long-stream mock.
UP = {"json": 18081, "sse": 18082, "fail": 18083, "idle": 18084}
PORTS = {
    "direct": UP,
    "nginx": {k: v + 100 for k, v in UP.items()},
    "backstop": {k: v + 200 for k, v in UP.items()},
    FLOOR: {k: v + 300 for k, v in UP.items()},
    JOURNAL: {k: v + 400 for k, v in UP.items()},
    JOURNAL_RESP: {k: v + 500 for k, v in UP.items()},
    RPM_LOCAL: {k: v + 600 for k, v in UP.items()},
    RPM_REDIS: {k: v + 700 for k, v in UP.items()},
    REPLAY: {k: v + 800 for k, v in UP.items()},
}
FLOOR_KINDS = ["json", "sse", "idle"]  # not "fail": it does not retry, so nothing to compare
FAIL_RATE = 0.3
procs = []  # every process we started, stopped in reverse order at exit


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

def start(cmd, name, tmp, cpus=None):
    if cpus is not None:
        cmd = ["taskset", "-c", cpus] + cmd
    out = open(os.path.join(tmp, f"{name}.log"), "wb")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    p.bench_name = name
    procs.append(p)
    return p


def stop_all():
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in reversed(procs):
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_port(port, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench: {proc.bench_name} exited with {proc.returncode}; see its log")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench: {proc.bench_name} did not listen on {port} within {timeout}s")


def cpulist(text):
    """ "0,2-3" -> {0, 2, 3}, as taskset -c reads it."""
    cpus = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def cpu_split(pids):
    """CPU seconds used so far by pids: (in user space, in the kernel)."""
    user = system = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        user += int(fields[11])  # utime (field 14)
        system += int(fields[12])  # stime (field 15)
    return user / TICK, system / TICK


def cpu_seconds(pids):
    return sum(cpu_split(pids))


def busy_seconds():
    """Busy CPU time of the whole machine (every core), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / TICK  # minus idle and iowait


def our_cpu():
    """CPU seconds used so far by this script, its reaped children (wrk) and every live
    process it started (nginx workers included)."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    for p in procs:
        if p.poll() is None:
            try:
                total += cpu_seconds([p.pid] + children(p.pid))
            except OSError:
                pass
    return total


class Noise:
    """Measures the CPU that processes outside the bench use from now on."""

    def __init__(self):
        self.t, self.busy, self.ours = time.monotonic(), busy_seconds(), our_cpu()

    def cores(self):
        """Average cores busy outside the bench since __init__."""
        foreign = busy_seconds() - self.busy - (our_cpu() - self.ours)
        return max(0.0, foreign) / max(1e-3, time.monotonic() - self.t)


NOISY = 0.2  # cores used by others during a run above which a round counts as noisy


def wait_quiet(max_wait):
    """Waits (bounded) until other processes leave the machine nearly idle."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait:
        n = Noise()
        time.sleep(0.5)
        if n.cores() < NOISY / 2:
            break
    return time.monotonic() - t0


def run_rounds(names, rounds, extra, max_wait, one):
    """Runs one(name) -> [results] for every name, interleaved and rotated, for
    `rounds` rounds plus up to `extra` more while some rounds were noisy; keeps the
    quietest `rounds` rounds. Each result gets the noise (foreign cores) of its run."""
    done = []  # (round index, worst noise, {name: [results]})
    for i in range(rounds + extra):
        if i >= rounds and sorted(d[1] for d in done)[rounds - 1] < NOISY:
            break
        wait_quiet(max_wait)
        res, worst = {}, 0.0
        for n in rotate(names, i):
            meter = Noise()
            res[n] = one(n)
            noise = meter.cores()
            worst = max(worst, noise)
            for r in res[n]:
                r["noise_cores"] = round(noise, 3)
        done.append((i, worst, res))
    keep = sorted(sorted(done, key=lambda d: d[1])[:rounds])
    out = {n: [r for _, _, res in keep for r in res[n]] for n in names}
    out["rounds_run"], out["rounds_noisy"] = len(done), sum(d[1] >= NOISY for d in done)
    return out


# ---------------------------------------------------------------- configs

def nginx_conf(tmp, name, body):
    d = os.path.join(tmp, name)
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    text = f"""{user}worker_processes 1;
worker_rlimit_nofile {nofile};
daemon off;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections {max(1024, nofile - 64)}; multi_accept on; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
{body}
}}
"""
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(text)
    return d, path


def upstream_nginx_body():
    with open(os.path.join(HERE, "completion.json")) as f:
        completion = f.read().strip()
    assert "'" not in completion
    return f"""  server {{
    listen 127.0.0.1:{UP['json']} backlog=4096;
    location / {{ default_type application/json; return 200 '{completion}'; }}
  }}"""


def proxy_nginx_body():
    """nginx as the equivalent reverse proxy: pooled keep-alive upstreams, no buffering.
    The failing upstream is listed three times so nginx retries a 503 up to 3 tries,
    like backstop's max_retries = 2."""
    blocks = []
    for kind, port in UP.items():
        servers = f"server 127.0.0.1:{port} max_fails=0;"
        retry = ""
        if kind == "fail":
            servers = " ".join([servers] * 3)
            retry = ("proxy_next_upstream error timeout http_503 non_idempotent; "
                     "proxy_next_upstream_tries 3;")
        blocks.append(f"""  upstream {kind} {{ {servers} keepalive 256; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{PORTS['nginx'][kind]} backlog=4096;
    location / {{
      proxy_pass http://{kind}; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; proxy_read_timeout 600s; {retry}
    }}
  }}""")
    return "\n".join(blocks)


def backstop_conf(tmp, kind, name="backstop"):
    port = PORTS[name][kind]
    retry = ""
    if kind == "fail":  # short backoff: measure the proxy, not the sleep between tries
        retry = ('[retry]\nbase_delay = "5ms"\nthrottle_base_delay = "5ms"\n'
                 'budget_ratio = 10.0\nbudget_min_per_second = 100000\n')
    text = f"""listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{port + 1000}"
{retry}
[failure_log]
dir = "{tmp}/failures"
{f'[journal]{chr(10)}dir = "{tmp}/journal-{name}-{kind}"{chr(10)}{JOURNALS[name]}' if name in JOURNALS else ""}
{f'[replay]{chr(10)}dir = "{tmp}/replay-{kind}"{chr(10)}' if name == REPLAY else ""}
{f'[redis]{chr(10)}url = "redis://127.0.0.1:{REDIS_PORT}/0"{chr(10)}key_prefix = "bench-{kind}:"' if LIMITED.get(name) else ""}
[[upstream]]
name = "bench"
base_url = "http://127.0.0.1:{UP[kind]}"
{LIMIT_KEYS if name in LIMITED else ""}"""
    path = os.path.join(tmp, f"{name}-{kind}.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


# ---------------------------------------------------------------- wrk

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(out):
    def num(pattern, default=0.0):
        m = re.search(pattern, out)
        return float(m.group(1)) if m else default
    lat = {}
    for pct, val, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M):
        lat[f"p{pct}_ms"] = float(val) * UNITS[unit]
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": int(num(r"(\d+) requests in")),
        "rps": num(r"Requests/sec:\s+([\d.]+)"),
        "non2xx": int(num(r"Non-2xx or 3xx responses: (\d+)")),
        "socket_errors": sum(int(x) for x in errs.groups()) if errs else 0,
        **lat,
    }


def wrk(url, conns, secs, threads, watch_pids, script="post.lua"):
    """Runs wrk; returns its numbers plus the CPU seconds and peak RSS of watch_pids."""
    cmd = ["wrk", "-t", str(min(threads, conns)), "-c", str(conns), "-d", f"{secs}s",
           "--latency", "-s", os.path.join(HERE, script), url]
    user0, system0 = cpu_split(watch_pids) if watch_pids else (0.0, 0.0)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    while p.poll() is None and time.monotonic() - t0 < secs + 30:
        if watch_pids and time.monotonic() - t0 > secs / 3:
            peak = max(peak, sse.rss_kib(watch_pids))
        time.sleep(0.25)
    if p.poll() is None:
        p.kill()
    out = p.communicate()[0]
    r = parse_wrk(out)
    if not r["requests"]:
        sys.exit(f"bench: wrk got nothing from {url}:\n{out}")
    if watch_pids:
        user1, system1 = cpu_split(watch_pids)
        r["cpu_s"] = (user1 - user0) + (system1 - system0)
        r["cpu_user_s"] = user1 - user0
        r["rss_peak_kib"] = peak
    return r


# ---------------------------------------------------------------- stats

def rotate(names, i):
    """A B C, B C A, C A B, ...: each contestant goes first in turn."""
    i %= len(names)
    return names[i:] + names[:i]


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backstop", required=True, help="release binary")
    ap.add_argument("--floor", help="hyper_floor example binary (none: contestant skipped)")
    ap.add_argument("--quick", action="store_true", help="short run to check the setup")
    ap.add_argument("--rounds", type=int, help="interleaved rounds per measurement")
    ap.add_argument("--seconds", type=int, help="length of each wrk run")
    ap.add_argument("--streams", type=int, help="open SSE streams for the memory test")
    ap.add_argument("--source", default="?", help="what the binary was built from")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args()
    rounds = a.rounds or (1 if a.quick else 5)
    secs = a.seconds or (2 if a.quick else 5)
    probes = 4 if a.quick else 10
    streams = a.streams or (1000 if a.quick else 10000)

    ncpu = os.cpu_count()
    proxy_cpus = os.environ.get("PROXY_CPUS", "1" if ncpu > 1 else "0")
    load_cpus = os.environ.get("LOAD_CPUS", "0" if ncpu <= 2 else f"0,2-{ncpu - 1}")
    os.sched_setaffinity(0, cpulist(load_cpus))
    threads = len(os.sched_getaffinity(0))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # backstop holds two descriptors per stream (client + upstream): that bounds the test.
    streams_possible = min(streams, (hard - 200) // 2)

    tmp = tempfile.mkdtemp(prefix="backstop-bench-")
    atexit.register(lambda: (stop_all(), shutil.rmtree(tmp, ignore_errors=True)))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = open("/proc/loadavg").read().split()[:3]
    busy0, self0 = busy_seconds(), os.times()
    log(f"tmp {tmp}; proxies on CPU {proxy_cpus}, load on CPU {load_cpus}; {rounds} rounds")
    names = [n for n in CONTESTANTS if n != FLOOR or a.floor]
    if shutil.which("redis-server") is None:
        log(f"no redis-server: the {RPM_REDIS} contestant is skipped")
        names.remove(RPM_REDIS)
    if not a.floor:
        log(f"no hyper_floor binary: the {FLOOR} contestant is skipped")
    proxies = [n for n in names if n != "direct"]

    # Upstreams (load CPUs): nginx for JSON, the mock for SSE / failures / long streams.
    d, conf = nginx_conf(tmp, "upstream-nginx", upstream_nginx_body())
    up_nginx = start(["nginx", "-p", d, "-c", conf, "-e", f"{d}/logs/error.log"], "upstream-nginx", tmp)
    mock = [a.backstop, "mock-upstream", "--seed", "1"]
    started_mocks = [
        start(mock + ["--listen", f"127.0.0.1:{UP['sse']}", "--stream-chunks", "20",
                      "--stream-gap", "20ms"], "mock-sse", tmp),
        start(mock + ["--listen", f"127.0.0.1:{UP['fail']}", "--fail-rate", str(FAIL_RATE)],
              "mock-fail", tmp),
        start(mock + ["--listen", f"127.0.0.1:{UP['idle']}", "--stream-chunks", "100",
                      "--stream-gap", "5s"], "mock-idle", tmp),
    ]
    # On the proxies' CPU: the replay is answered across the same CPU boundary from wrk
    # as the call it is measured against (on wrk's CPU the mock would skip the wake-up
    # every answer from another CPU costs, ~50 µs here).
    mock_json = start(mock + ["--listen", f"127.0.0.1:{MOCK_JSON_PORT}"], "mock-json", tmp,
                      proxy_cpus)
    wait_port(UP["json"], up_nginx)
    wait_port(MOCK_JSON_PORT, mock_json)
    for p, k in zip(started_mocks, ["sse", "fail", "idle"]):
        wait_port(UP[k], p)

    # Proxies (proxy CPUs).
    d, conf = nginx_conf(tmp, "proxy-nginx", proxy_nginx_body())
    px_nginx = start(["nginx", "-p", d, "-c", conf, "-e", f"{d}/logs/error.log"], "proxy-nginx",
                     tmp, proxy_cpus)
    bs = {}
    for kind in UP:
        bs[kind] = start([a.backstop, "serve", "--config", backstop_conf(tmp, kind)],
                         f"backstop-{kind}", tmp, proxy_cpus)
    if RPM_REDIS in names:  # the shared-state store, on the load CPUs like the upstreams
        redis = start(["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1",
                       "--save", "", "--appendonly", "no", "--dir", tmp], "redis", tmp)
        wait_port(REDIS_PORT, redis)
    journaled = {}
    for name in FEATURES:
        for kind in JOURNAL_KINDS:
            journaled[name, kind] = start([a.backstop, "serve", "--config",
                                           backstop_conf(tmp, kind, name)],
                                          f"{name}-{kind}", tmp, proxy_cpus)
    floor = {}
    if a.floor:  # one process per upstream, like backstop
        for kind in FLOOR_KINDS:
            floor[kind] = start([a.floor, f"127.0.0.1:{PORTS[FLOOR][kind]}",
                                 f"http://127.0.0.1:{UP[kind]}"], f"{FLOOR}-{kind}", tmp, proxy_cpus)
    for kind in UP:
        wait_port(PORTS["nginx"][kind], px_nginx)
        wait_port(PORTS["backstop"][kind] + 1000, bs[kind])
        wait_port(PORTS["backstop"][kind], bs[kind])
    for kind, p in floor.items():
        wait_port(PORTS[FLOOR][kind], p)
    for (name, kind), p in journaled.items():
        wait_port(PORTS[name][kind], p)
    time.sleep(0.5)

    def pids(name, kind):
        if name == DIRECT_MOCK:
            return [mock_json.pid]
        if name == "nginx":
            return [px_nginx.pid] + children(px_nginx.pid)
        if name == "backstop":
            return [bs[kind].pid]
        if name == FLOOR:
            return [floor[kind].pid]
        if name in FEATURES:
            return [journaled[name, kind].pid]
        return []

    def script(name):
        return "replay.lua" if name == REPLAY else "post.lua"

    def url(name, kind):
        port = MOCK_JSON_PORT if name == DIRECT_MOCK else PORTS[name][kind]
        return f"http://127.0.0.1:{port}/v1/chat/completions"

    R = {"contestants": names, "rss_idle_kib": {n: sse.rss_kib(pids(n, "json")) for n in proxies}}

    log("warm-up")
    for n in names:
        wrk(url(n, "json"), 32, 1, threads, [], script(n))
        sse.probe(PORTS[n]["sse"])

    extra, max_wait = (0, 2) if a.quick else (2, 8)

    def phase(one, among=names, n_rounds=rounds):
        return run_rounds(among, n_rounds, extra, max_wait, one)

    log("latency at 1 connection")
    R["latency"] = phase(lambda n: [wrk(url(n, "json"), 1, secs, 1, pids(n, "json"), script(n))])
    for conns in (32, 256):
        log(f"throughput at {conns} connections")
        R[f"c{conns}"] = phase(lambda n: [wrk(url(n, "json"), conns, secs, threads, pids(n, "json"),
                                              script(n))])
    if REPLAY in names:  # a replay against a direct call to the mock, side by side
        log("replay vs a direct call to the mock")
        pair = [DIRECT_MOCK, REPLAY]
        R["replay_vs_mock"] = {
            "latency": phase(lambda n: [wrk(url(n, "json"), 1, secs, 1, pids(n, "json"), script(n))], pair),
            "c32": phase(lambda n: [wrk(url(n, "json"), 32, secs, threads, pids(n, "json"), script(n))],
                         pair),
        }
    # What [journal] costs, each against plain backstop with only the two taking turns
    # (as bench/ab.py does), twice the rounds: in the phase above a pair is up to a
    # round of all contestants apart, and the host's noise moves a ratio by more than
    # the few points measured.
    R["journal_vs_backstop"] = {}
    for j in [j for j in JOURNALS if j in names]:
        log(f"{j} vs backstop, side by side")
        R["journal_vs_backstop"][j] = phase(
            lambda n: [wrk(url(n, "json"), 32, secs, threads, pids(n, "json"), script(n))],
            ["backstop", j], 2 * rounds)
    log("SSE through each contestant")
    R["sse"] = phase(lambda n: [sse.probe(PORTS[n]["sse"]) for _ in range(probes)])
    log(f"failure path: mock answers {FAIL_RATE:.0%} 503")
    R["fail"] = phase(lambda n: [wrk(url(n, "fail"), 32, secs, threads, pids(n, "fail"))],
                      [n for n in names if n != FLOOR and n not in FEATURES])

    R["rss_after_load_kib"] = {n: sse.rss_kib(pids(n, "json")) for n in proxies}

    R["hold"] = {}
    for n in [n for n in ["backstop", FLOOR, "nginx"] if n in names]:
        log(f"{streams_possible} open SSE streams through {n}")
        wait_quiet(max_wait)
        meter = Noise()
        R["hold"][n] = sse.hold(PORTS[n]["idle"], streams_possible, pids(n, "idle"),
                                open_timeout=30 if a.quick else 90)
        R["hold"][n]["noise_cores"] = round(meter.cores(), 3)
        time.sleep(1)

    busy1, self1 = busy_seconds(), os.times()
    ours = sum(cpu_seconds([p.pid] + children(p.pid)) for p in procs if p.poll() is None)
    ours += (self1.user + self1.system + self1.children_user + self1.children_system
             - self0.user - self0.system - self0.children_user - self0.children_system)
    R["machine"] = {
        "started": started.isoformat(timespec="seconds"),
        "wall_s": round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()),
        "loadavg_start": load0, "loadavg_end": open("/proc/loadavg").read().split()[:3],
        "busy_s": round(busy1 - busy0, 1), "foreign_busy_s": round(max(0.0, busy1 - busy0 - ours), 1),
        "cpus": ncpu, "proxy_cpus": proxy_cpus, "load_cpus": load_cpus,
        "nofile_hard": hard, "streams_asked": streams,
    }
    R["config"] = {"rounds": rounds, "seconds": secs, "probes": probes, "quick": a.quick,
                   "wrk_threads": threads, "binary": a.backstop,
                   "binary_bytes": os.path.getsize(a.backstop), "floor_binary": a.floor}
    stop_all()

    os.makedirs(a.out, exist_ok=True)
    stamp = started.strftime("%Y-%m-%d-%H%M") + ("-quick" if a.quick else "")
    R["about"] = machine_info(a.source)
    md = report.render(R, R["about"])
    with open(os.path.join(a.out, f"{stamp}.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.out, f"{stamp}.json"), "w") as f:
        json.dump(R, f, indent=1)
    print(md)
    log(f"report: {os.path.join(a.out, stamp + '.md')}")


def machine_info(source):
    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                                  cwd=REPO).stdout.strip() or "?"
        except OSError:
            return "?"
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    return {
        "cpu": f"{model}, {os.cpu_count()} CPUs", "memory": f"{mem} MiB",
        "kernel": platform.release(), "os": sh(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"]),
        "nginx": nginx_v.replace("nginx version: ", ""), "wrk": sh(["sh", "-c", "wrk -v 2>&1 | head -1"]),
        "rustc": sh(["rustc", "--version"]),
        "commit": source,
    }


if __name__ == "__main__":
    main()
