#!/usr/bin/env python3
"""Where a function is called from, per request: every call site of FUNCTION in two
callgrind profiles taken with --dump-instr=yes (N1 and N2 requests), with the calls
per request at that site and the source lines it was inlined from (addr2line).

    bench/callgrind_sites.py FUNCTION BINARY PROFILE_N1 PROFILE_N2 N1 N2

`bench/callgrind` runs it when CALLGRIND_SITES=FUNCTION is set: CALLGRIND_SITES=malloc
lists every allocation a request makes, and where. For `memcpy` the size moved is shown
when the call site loads it as a constant (a future or a struct moved whole).
"""

import collections
import re
import subprocess
import sys


def position(token, last):
    """A callgrind position: absolute, relative to the last one (+n, -n), or the same (*)."""
    if token == "*":
        return last
    if token[0] in "+-":
        value = int(token[1:], 16) if token[1:].startswith("0x") else int(token[1:])
        return last + value if token[0] == "+" else last - value
    return int(token, 16) if token.startswith("0x") else int(token)


def call_sites(path, function):
    """(calling function, call address) -> calls made to `function` from there."""
    names, sites = {}, collections.Counter()
    current = callee = pending = None
    last = 0
    with open(path) as profile:
        for line in profile:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            named = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line)
            if named:
                kind, ident, name = named.groups()
                if name:
                    names[ident] = name
                if kind == "fn":
                    current = names.get(ident)
                else:
                    callee = names.get(ident)
                continue
            calls = re.match(r"^calls=(\d+) ", line)
            if calls:
                pending = (callee, int(calls.group(1)))
                continue
            if re.match(r"^[a-z]+=", line):
                continue
            token = line.split()[0]
            if token[0] in "+-*0123456789":
                last = position(token, last)
                if pending:
                    name, count = pending
                    if name and name.split(" ")[0] == function:
                        sites[(current or "?", last)] += count
                    pending = None
    return sites


def source_lines(binary, address):
    """The inlined frames at `address`, outermost last, without the allocator's own."""
    out = subprocess.run(
        ["addr2line", "-e", binary, "-i", hex(address)], capture_output=True, text=True
    ).stdout.split("\n")
    frames = ["/".join(f.split("/")[-2:]) for f in out if f]
    plumbing = r"alloc|raw_vec|boxed|sync\.rs|vec/|string\.rs|rc\.rs|unix\.rs|ptr/mod\.rs"
    return [f for f in frames if not re.search(plumbing, f)] or frames


def moved_size(binary, address):
    """The constant size loaded into the third argument right before the call, if any."""
    text = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", f"--start-address={address - 40}",
         f"--stop-address={address + 1}", binary],
        capture_output=True, text=True,
    ).stdout
    sizes = re.findall(r"mov\s+\$0x([0-9a-f]+),%edx", text)
    return int(sizes[-1], 16) if sizes else None


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    function, binary, first, second = sys.argv[1:5]
    n1, n2 = int(sys.argv[5]), int(sys.argv[6])
    before, after = call_sites(first, function), call_sites(second, function)
    rows = []
    for site in set(before) | set(after):
        per_request = (after[site] - before[site]) / (n2 - n1)
        if per_request >= 0.5:
            rows.append((per_request, site))
    print(f"callgrind: calls to {function} per request, by call site")
    for per_request, (caller, address) in sorted(rows, reverse=True):
        size = moved_size(binary, address) if "memcpy" in function else None
        moved = f" {size} B" if size else ""
        where = " <- ".join(source_lines(binary, address)[:4])
        print(f"{per_request:5.2f}{moved}  {caller[:60]}  | {where}")


if __name__ == "__main__":
    main()
