"""Turns the raw numbers of one bench run (bench.py's R) into the Markdown report."""

import statistics

FLOOR = "hyper-floor"
# Reports of runs before hyper-floor existed have no "contestants" list: these three.
OLD_NAMES = ["direct", "nginx", "backstop"]

FAIL_RATE = 0.3
MIB = 1024


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f(x, d=2, unit=""):
    return "n/a" if x is None else f"{x:,.{d}f}{unit}"


def per_round(a, b, fn):
    """Median over rounds of fn(a_i, b_i): a and b ran side by side in each round."""
    return med([fn(x, y) for x, y in zip(a, b)])


def cpu_per_10k(r, successes=False):
    n = r["requests"] - (r["non2xx"] if successes else 0)
    return r["cpu_s"] / n * 1e4 if n else None


def user_per_10k(r):
    """CPU in user space per 10k requests; None for runs from before it was recorded."""
    n = r["requests"]
    return r["cpu_user_s"] / n * 1e4 if n and "cpu_user_s" in r else None


def names(R, phase=None):
    """Contestants of the run, or of one phase (the failure path has no hyper-floor)."""
    all_ = R.get("contestants", OLD_NAMES)
    return all_ if phase is None else [n for n in all_ if n in R[phase]]


def summarize(R):
    S = {}
    lat = R["latency"]
    for n in names(R):
        runs = lat[n]
        S[f"lat_{n}"] = {p: med([r.get(f"{p}_ms") for r in runs]) for p in ("p50", "p90", "p99")}
        if n != "direct":
            S[f"added_{n}"] = {p: per_round(runs, lat["direct"], lambda a, b: a[f"{p}_ms"] - b[f"{p}_ms"])
                               for p in ("p50", "p90", "p99")}
    for c in ("c32", "c256"):
        for n in names(R):
            runs = R[c][n]
            S[f"{c}_{n}"] = {
                "rps": med([r["rps"] for r in runs]),
                "vs_direct": per_round(runs, R[c]["direct"], lambda a, b: a["rps"] / b["rps"]),
                "cpu10k": med([cpu_per_10k(r) for r in runs]) if n != "direct" else None,
                "user10k": med([user_per_10k(r) for r in runs]) if n != "direct" else None,
                "core": med([r["cpu_s"] / R["config"]["seconds"] for r in runs]) if n != "direct" else None,
                "rss": med([r["rss_peak_kib"] for r in runs]) if n != "direct" else None,
                "errors": sum(r["non2xx"] + r["socket_errors"] for r in runs),
            }
        S[f"{c}_ratio"] = per_round(R[c]["backstop"], R[c]["nginx"], lambda a, b: a["rps"] / b["rps"])
        S[f"{c}_cpu_ratio"] = per_round(R[c]["backstop"], R[c]["nginx"],
                                        lambda a, b: cpu_per_10k(a) / cpu_per_10k(b))
        for j in ("backstop-journal", "backstop-journal-responses"):
            if j in R[c]:  # what [journal] costs: same-round CPU per request vs plain backstop
                S[f"{c}_cpu_ratio_{j}"] = per_round(R[c][j], R[c]["backstop"],
                                                    lambda a, b: cpu_per_10k(a) / cpu_per_10k(b))
        if "backstop-rpm-redis" in R[c] and "backstop-rpm-local" in R[c]:
            # what [redis] costs: a shared limit vs the same limit kept locally
            S[f"{c}_cpu_ratio_redis"] = per_round(R[c]["backstop-rpm-redis"], R[c]["backstop-rpm-local"],
                                                  lambda a, b: cpu_per_10k(a) / cpu_per_10k(b))
        if FLOOR in R[c]:  # the split of the gap: (floor / nginx) x (backstop / floor)
            for key, (x, y) in {"floor_nginx": (FLOOR, "nginx"),
                                "backstop_floor": ("backstop", FLOOR)}.items():
                S[f"{c}_ratio_{key}"] = per_round(R[c][x], R[c][y], lambda a, b: a["rps"] / b["rps"])
                S[f"{c}_cpu_ratio_{key}"] = per_round(R[c][x], R[c][y],
                                                      lambda a, b: cpu_per_10k(a) / cpu_per_10k(b))
    d = R["sse"]["direct"]
    for n in names(R):
        probes = R["sse"][n]
        S[f"sse_{n}"] = {
            "headers": med([p["headers_ms"] for p in probes]),
            "first": med([p["first_event_ms"] for p in probes]),
            "first_over": med([p["first_event_ms"] for p in probes]) - med([p["first_event_ms"] for p in d]),
            "headers_over": med([p["headers_ms"] for p in probes]) - med([p["headers_ms"] for p in d]),
            "gap_max": max(p["max_gap_ms"] for p in probes),
            "gap_med": med([p["max_gap_ms"] for p in probes]),
            "events": min(p["events"] for p in probes),
            "total": med([p["total_ms"] for p in probes]),
        }
    for n in names(R, "fail"):
        runs = R["fail"][n]
        ok = sum(r["requests"] - r["non2xx"] for r in runs)
        total = sum(r["requests"] for r in runs)
        S[f"fail_{n}"] = {
            "rps": med([r["rps"] for r in runs]),
            "ok_rps": med([r["rps"] * (1 - r["non2xx"] / r["requests"]) for r in runs]),
            "success": ok / total if total else None,
            "cpu10k_ok": med([cpu_per_10k(r, True) for r in runs]) if n != "direct" else None,
        }
    for n, h in R["hold"].items():
        opened = h["open"]
        half = h["rss_half_kib"]
        S[f"hold_{n}"] = dict(
            h, per_stream=(h["rss_open_kib"] - h["rss_before_kib"]) / opened if opened else None,
            # the second half of the streams alone: growth without the one-time costs
            marginal=(h["rss_open_kib"] - half) / (opened - h["asked"] // 2) if half and opened > h["asked"] // 2 else None)
    return S


def replay_vs_mock(R, what):
    """A replay over a direct call to the mock, measured side by side in the run's
    replay_vs_mock phase: p50 at 1 connection ("latency") or 32 ("c32_p50"), or CPU per
    request at 32 connections ("c32"). None for runs without that phase (older reports)."""
    pair = R.get("replay_vs_mock")
    if not pair:
        return None
    phase, ratio = {
        "latency": ("latency", lambda a, b: a["p50_ms"] / b["p50_ms"]),
        "c32_p50": ("c32", lambda a, b: a["p50_ms"] / b["p50_ms"]),
        "c32": ("c32", lambda a, b: cpu_per_10k(a) / cpu_per_10k(b)),
    }[what]
    return per_round(pair[phase]["backstop-replay"], pair[phase]["direct-mock"], ratio)


def journal_vs_backstop(R, name):
    """CPU per request at 32 connections with [journal] (`name`'s table) over plain
    backstop, measured side by side in the run's journal_vs_backstop phase. None for
    runs without that phase (older reports)."""
    pair = R.get("journal_vs_backstop", {}).get(name)
    if not pair:
        return None
    return per_round(pair[name], pair["backstop"], lambda a, b: cpu_per_10k(a) / cpu_per_10k(b))


def redis_added_p50(S):
    """p50 at 1 connection through the shared limit minus the local one, in µs."""
    shared, local = S.get("added_backstop-rpm-redis"), S.get("added_backstop-rpm-local")
    if not shared or not local:
        return None
    return (shared["p50"] - local["p50"]) * 1e3


def targets(R, S):
    b, n = "backstop", "nginx"
    size = R["config"]["binary_bytes"] / MIB / MIB
    idle = R["rss_idle_kib"][b] / MIB
    per = S[f"hold_{b}"]["per_stream"]
    rows = [
        ("CPU per request (c=32), backstop / nginx", "≤ 1.00×", S["c32_cpu_ratio"], "×",
         lambda v: v <= 1.0),
        ("Throughput at 32 connections, backstop / nginx", "≥ 1.00×", S["c32_ratio"], "×",
         lambda v: v >= 1.0),
        ("Added p50 at 1 connection, backstop vs nginx", f"≤ nginx's ({f(S['added_nginx']['p50'] * 1e3, 0)} µs)",
         S["added_backstop"]["p50"] * 1e3, " µs", lambda v: v <= S["added_nginx"]["p50"] * 1e3),
        ("SSE first-event overhead vs direct", "≤ 0.5 ms", S[f"sse_{b}"]["first_over"], " ms",
         lambda v: v <= 0.5),
        ("CPU per request (c=32), [journal] metadata / backstop, side by side", "≤ 1.10×",
         journal_vs_backstop(R, "backstop-journal"), "×", lambda v: v <= 1.10),
        ("CPU per request (c=32), [journal] responses = true / backstop, side by side", "≤ 1.25×",
         journal_vs_backstop(R, "backstop-journal-responses"), "×", lambda v: v <= 1.25),
        ("the same, [journal] metadata, in the all-contestants phase", "report",
         S.get("c32_cpu_ratio_backstop-journal"), "×", lambda v: True),
        ("the same, [journal] responses = true, in the all-contestants phase", "report",
         S.get("c32_cpu_ratio_backstop-journal-responses"), "×", lambda v: True),
        ("Replay served / direct call to the mock, p50 at 1 connection", "≤ 1.00×",
         replay_vs_mock(R, "latency"), "×", lambda v: v <= 1.0),
        ("Replay served / direct call to the mock, p50 at 32 connections", "≤ 1.00×",
         replay_vs_mock(R, "c32_p50"), "×", lambda v: v <= 1.0),
        ("Replay served / direct call to the mock, CPU per request (c=32)", "≤ 1.00×",
         replay_vs_mock(R, "c32"), "×", lambda v: v <= 1.0),
        ("CPU per request (c=32), shared RPM limit ([redis]) / local", "report",
         S.get("c32_cpu_ratio_redis"), "×", lambda v: True),
        ("Added p50 at 1 connection, shared RPM limit vs local", "≤ 300 µs",
         redis_added_p50(S), " µs", lambda v: v <= 300),
        ("RSS idle (fresh process)", "≤ 10 MiB", idle, " MiB", lambda v: v <= 10),
        ("RSS per open SSE stream", "≤ 30 KiB", per, " KiB", lambda v: v <= 30),
        ("Release binary size", "≤ 15 MiB", size, " MiB", lambda v: v <= 15),
    ]
    out = ["| target | goal | measured | result |", "|---|---|---|---|"]
    for name, goal, v, unit, ok in rows:
        if v is None:
            res = "n/a"
        elif goal == "report":  # a figure to read, not a target
            res = "—"
        else:
            res = "**pass**" if ok(v) else "**miss**"
        out.append(f"| {name} | {goal} | {f(v, 2, unit)} | {res} |")
    return "\n".join(out)


def part_ratio(phase, who, part):
    """who / nginx in CPU per request, counting only the user-space or only the kernel part:
    the median of same-round ratios."""
    def one(r):
        user = user_per_10k(r)
        return user if part == "user" else cpu_per_10k(r) - user
    return per_round(phase[who], phase["nginx"], lambda a, b: one(a) / one(b))


def gap(R, S):
    """backstop / nginx split into what the HTTP stack costs and what backstop adds."""
    L = ["## Where the gap is\n",
         f"{FLOOR} is the smallest proxy on backstop's HTTP stack (`examples/hyper_floor.rs`: "
         "hyper's servers and backstop's own connection handling and upstream client, request "
         "body buffered, hop-by-hop headers dropped, response streamed; none of backstop's "
         "features). backstop / nginx = "
         f"({FLOOR} / nginx) × (backstop / {FLOOR}): the first factor is what the stack costs "
         "against nginx, the second what backstop's own work (retries, classification, "
         "metrics, failure log, limits) costs on top. Each ratio is the median over rounds of "
         "same-round ratios, so the product is close to, not exactly, the left column.\n",
         f"| measure | backstop / nginx | = {FLOOR} / nginx | × backstop / {FLOOR} |",
         "|---|---|---|---|"]
    for c in ("c32", "c256"):
        L.append(f"| CPU per request, {c[1:]} connections | {f(S[f'{c}_cpu_ratio'])}× | "
                 f"{f(S[f'{c}_cpu_ratio_floor_nginx'])}× | {f(S[f'{c}_cpu_ratio_backstop_floor'])}× |")
    for c in ("c32", "c256"):
        L.append(f"| throughput, {c[1:]} connections | {f(S[f'{c}_ratio'])}× | "
                 f"{f(S[f'{c}_ratio_floor_nginx'])}× | {f(S[f'{c}_ratio_backstop_floor'])}× |")
    n, fl, b = (S[f"c32_{x}"]["cpu10k"] for x in ("nginx", FLOOR, "backstop"))
    if None not in (n, fl, b):
        L.append(f"\nIn CPU-s per 10k requests at 32 connections: nginx {f(n, 3)}, {FLOOR} {f(fl, 3)}, "
                 f"backstop {f(b, 3)}.")
        if n <= fl <= b and b > n:  # shares only make sense when the floor is in between
            L[-1] += (f" Of backstop's extra {f(b - n, 3)} over nginx, {f(fl - n, 3)} "
                      f"({f((fl - n) / (b - n) * 100, 0)} %) is the HTTP stack and {f(b - fl, 3)} "
                      f"({f((b - fl) / (b - n) * 100, 0)} %) is backstop's own work.")
        users = [S[f"c32_{x}"]["user10k"] for x in ("nginx", FLOOR, "backstop")]
        if None not in users:
            un, uf, ub = users
            c32 = R["c32"]
            L.append(f"\nThe same split into user space and the kernel (utime and stime): nginx "
                     f"{f(un, 3)} + {f(n - un, 3)}, {FLOOR} {f(uf, 3)} + {f(fl - uf, 3)}, backstop "
                     f"{f(ub, 3)} + {f(b - ub, 3)}; backstop / nginx {f(part_ratio(c32, 'backstop', 'user'))}× "
                     f"in user space and {f(part_ratio(c32, 'backstop', 'kernel'))}× in the kernel, "
                     f"{FLOOR} / nginx {f(part_ratio(c32, FLOOR, 'user'))}× and "
                     f"{f(part_ratio(c32, FLOOR, 'kernel'))}×. The kernel's "
                     "part is the reads, writes and epoll waits every proxy makes; what the "
                     "proxies' own code costs is the user-space part.")
    return "\n".join(L) + "\n"


def render(R, M):
    S = summarize(R)
    m, c = R["machine"], R["config"]
    L = []
    add = L.append
    add(f"# backstop benchmark — {m['started'][:10]}{' (quick run)' if c['quick'] else ''}\n")
    add("> **Only ratios within one run are comparable across runs.** Absolute numbers depend on "
        "the machine, its load and the kernel; every contestant here ran interleaved "
        "(A B C, B C A, …) on the same machine in the same minutes.\n")
    add("## Machine and run\n")
    add(f"- started {m['started']} UTC, {m['wall_s']} s wall; backstop `{M['commit']}`, {M['rustc']}")
    add(f"- {M['cpu']}, {M['memory']}, {M['os']}, kernel {M['kernel']}; nginx {M['nginx']}, {M['wrk']}")
    add(f"- proxies pinned to CPU {m['proxy_cpus']}; upstreams, wrk ({c['wrk_threads']} thread) and "
        f"the SSE client on CPU {m['load_cpus']}; nginx proxy and upstream: 1 worker each")
    if FLOOR not in names(R):
        add(f"- no {FLOOR} in this run (no binary, or a run from before it existed), so no split of the gap")
    add(f"- {c['rounds']} interleaved rounds kept per phase (the quietest, when noisy rounds forced "
        f"extra ones), {c['seconds']} s per wrk run, {c['probes']} SSE probes per contestant per "
        "round; each figure is the median over the kept rounds")
    add(f"- load average at start {' '.join(m['loadavg_start'])}, at end {' '.join(m['loadavg_end'])}; "
        f"CPU used by processes outside the bench during the run: {m['foreign_busy_s']} core-s "
        f"of {m['busy_s']} busy core-s")
    phases = [("latency", "latency"), ("c32", "32 conns"), ("c256", "256 conns"), ("sse", "SSE"),
              ("fail", "failure path")]
    parts = []
    worst_all = 0.0
    for key, label in phases:
        ph = R[key]
        worst = max(r.get("noise_cores", 0.0) for n in names(R, key) for r in ph[n])
        worst_all = max(worst_all, worst)
        parts.append(f"{label} {ph['rounds_run']} run / {ph['rounds_noisy']} noisy / worst kept {worst:.2f}")
    add("- rounds per phase (run / noisy / worst other-process load in a kept run, in cores): "
        + "; ".join(parts) + "\n")
    if worst_all >= 0.2:
        add("> **Warning: other processes used the machine during kept runs** (up to "
            f"{worst_all:.2f} cores). Absolute numbers and throughput are depressed; CPU per "
            "request and same-round ratios are the least affected. Re-run on a quiet machine.\n")
    add("## Targets\n")
    add(targets(R, S) + "\n")
    if FLOOR in names(R):
        add(gap(R, S))

    add("## Latency at 1 connection (JSON completion, keep-alive)\n")
    add("| contestant | p50 | p90 | p99 | added p50 | added p90 | added p99 |")
    add("|---|---|---|---|---|---|---|")
    for n in names(R):
        l, a = S[f"lat_{n}"], S.get(f"added_{n}", {})
        us = lambda v: f(v * 1e3 if v is not None else None, 0, " µs")
        add(f"| {n} | {us(l['p50'])} | {us(l['p90'])} | {us(l['p99'])} | "
            f"{us(a.get('p50'))} | {us(a.get('p90'))} | {us(a.get('p99'))} |")
    add("")
    add("## Throughput, CPU and memory under load\n")
    add("| connections | contestant | req/s | vs direct | CPU-s per 10k req | proxy core busy | RSS under load | errors |")
    add("|---|---|---|---|---|---|---|---|")
    for cc in ("c32", "c256"):
        for n in names(R):
            s = S[f"{cc}_{n}"]
            rss = f(s["rss"] / MIB, 1, " MiB") if s["rss"] else "—"
            add(f"| {cc[1:]} | {n} | {f(s['rps'], 0)} | {f(s['vs_direct'], 2, '×')} | "
                f"{f(s['cpu10k'], 3) if s['cpu10k'] is not None else '—'} | "
                f"{f(s['core'] * 100, 0, ' %') if s['core'] is not None else '—'} | {rss} | {s['errors']} |")
    add("")
    add(f"backstop / nginx: throughput {f(S['c32_ratio'])}× at 32, {f(S['c256_ratio'])}× at 256 "
        f"connections; CPU per request {f(S['c32_cpu_ratio'])}× at 32, {f(S['c256_cpu_ratio'])}× at 256.")
    idle = [f"{'nginx (master + worker)' if n == 'nginx' else n} {f(R['rss_idle_kib'][n] / MIB, 1)} MiB fresh, "
            f"{f(R['rss_after_load_kib'][n] / MIB, 1)} MiB after the load" for n in names(R) if n != "direct"]
    add("RSS of the JSON proxy process: " + "; ".join(idle) + ".\n")

    add("## SSE (mock: 20 chunks, 20 ms apart)\n")
    add("| contestant | headers | first event | first-event overhead | headers overhead | max gap (worst / median) | stream total |")
    add("|---|---|---|---|---|---|---|")
    for n in names(R):
        s = S[f"sse_{n}"]
        over = "—" if n == "direct" else f(s["first_over"], 3, " ms")
        hover = "—" if n == "direct" else f(s["headers_over"], 3, " ms")
        add(f"| {n} | {f(s['headers'], 3, ' ms')} | {f(s['first'], 3, ' ms')} | {over} | {hover} | "
            f"{f(s['gap_max'], 1)} / {f(s['gap_med'], 1)} ms | {f(s['total'], 0, ' ms')} |")
    add("")
    add(f"## Failure path (mock answers {FAIL_RATE:.0%} of requests with 503, 32 connections)\n")
    if FLOOR in names(R):
        add(f"{FLOOR} does not retry, so it is not measured here.\n")
    expect = 1 - FAIL_RATE ** 3
    add(f"Expectation with 3 attempts: success rate 1 − p³ = {expect:.1%}; without retries 1 − p = {1 - FAIL_RATE:.0%}. "
        "nginx retries via `proxy_next_upstream http_503 non_idempotent` over the same server listed "
        "3 times; backstop runs with `base_delay = throttle_base_delay = 5ms` and an unlimited budget.\n")
    add("| contestant | req/s | successful req/s | success rate | CPU-s per 10k successful |")
    add("|---|---|---|---|---|")
    for n in names(R, "fail"):
        s = S[f"fail_{n}"]
        cpu = "—" if s["cpu10k_ok"] is None else f(s["cpu10k_ok"], 3)
        add(f"| {n} | {f(s['rps'], 0)} | {f(s['ok_rps'], 0)} | {f(s['success'] * 100, 1, ' %')} | {cpu} |")
    add("")
    add("## Open SSE streams (long, idle-ish streams: one event every 5 s)\n")
    add(f"Asked for {m['streams_asked']} streams; the descriptor limit here is {m['nofile_hard']} "
        "(hard, cannot be raised without privileges) and a proxy holds two per stream, so at most "
        f"{(m['nofile_hard'] - 200) // 2} were attempted. nginx also keeps its idle keep-alive "
        "upstream connections (up to 256 per upstream) open, which take descriptors from the same budget.\n")
    add("| proxy | open | failed | time to open | RSS before | RSS with all open | RSS per stream | second half only | RSS after closing |")
    add("|---|---|---|---|---|---|---|---|---|")
    for n in R["hold"]:
        h = S[f"hold_{n}"]
        add(f"| {n} | {h['open']} | {h['failed']} | {h['open_seconds']} s | {f(h['rss_before_kib'] / MIB, 1, ' MiB')} | "
            f"{f(h['rss_open_kib'] / MIB, 1, ' MiB')} | {f(h['per_stream'], 1, ' KiB')} | {f(h['marginal'], 1, ' KiB')} | "
            f"{f(h['rss_after_close_kib'] / MIB, 1, ' MiB')} |")
    add("")
    add(f"Binary: {f(c['binary_bytes'] / MIB / MIB, 2)} MiB (`{c['binary']}`)"
        + (f"; {FLOOR}: `{c['floor_binary']}`." if c.get("floor_binary") else "."))
    add("Raw numbers: the `.json` file next to this report.")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    # Re-render a report from its raw numbers: python3 bench/report.py RESULT.json > RESULT.md
    import json
    import sys

    with open(sys.argv[1]) as fh:
        raw = json.load(fh)
    sys.stdout.write(render(raw, raw["about"]))
