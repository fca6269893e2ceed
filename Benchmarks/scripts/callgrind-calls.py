#!/usr/bin/env python3
"""Calls per message of the runtime functions that matter on the hot path, from a callgrind
profile (instructions-per-message.sh's OUT): swift_retain/release, dynamic exclusivity checks
(swift_beginAccess), malloc/free, and which functions make those calls.

  callgrind-calls.py PROFILE MESSAGES [TOP]

The profile must be taken without --separate-* options (the script's defaults). Calls are
summed over every caller; MESSAGES divides them (the script's "round trips" or deliveries).
TOP callers of each function are listed (default 6) with their calls per message, then the
TOP * 3 functions by self cost (instructions per message). Names are demangled when
`swift demangle` is on PATH.
"""
import re
import sys
from collections import defaultdict

WATCHED = ["swift_retain", "swift_release", "swift_bridgeObjectRetain", "swift_bridgeObjectRelease",
           "swift_beginAccess", "malloc", "free", "posix_memalign", "swift_allocObject"]


def parse(path):
    names = {}  # "(id)" -> name, for the compressed fn/cfn names
    calls = defaultdict(lambda: defaultdict(int))  # callee -> caller -> calls
    self_cost = defaultdict(int)  # function -> instructions in it, callees excluded
    current = None
    callee = None
    after_calls = False
    pattern = re.compile(r"^(fn|cfn)=\((\d+)\)(?: (.*))?$")
    with open(path, errors="replace") as f:
        for line in f:
            m = pattern.match(line.rstrip("\n"))
            if m:
                kind, ident, name = m.groups()
                if name is not None:
                    names[ident] = name
                if kind == "fn":
                    current = names.get(ident, ident)
                else:
                    callee = names.get(ident, ident)
                continue
            if line.startswith("calls="):
                n = int(line[6:].split()[0])
                calls[callee][current] += n
                after_calls = True
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                fields = line.split()
                if after_calls:
                    after_calls = False  # the call's inclusive cost, not this function's
                elif len(fields) >= 2 and current is not None:
                    self_cost[current] += int(fields[1])
    return calls, self_cost


def demangle(names):
    import shutil
    import subprocess
    if not shutil.which("swift"):
        return {n: n for n in names}
    try:
        out = subprocess.run(["swift", "demangle", "--simplified"], input="\n".join(names), capture_output=True,
                             text=True, timeout=60).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return {n: n for n in names}
    return {n: (out[i] if i < len(out) and out[i] else n) for i, n in enumerate(names)}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    calls, self_cost = parse(sys.argv[1])
    messages = float(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    shown = []
    for name in WATCHED:
        callers = calls.get(name)
        if callers:
            shown += [c for c, _ in sorted(callers.items(), key=lambda kv: -kv[1])[:top]]
    hottest = sorted(self_cost.items(), key=lambda kv: -kv[1])[:top * 3]
    pretty = demangle(sorted(set(shown + [f for f, _ in hottest])))
    for name in WATCHED:
        callers = calls.get(name)
        if not callers:
            continue
        total = sum(callers.values())
        print(f"{name}: {total / messages:.2f} per message ({total} calls)")
        for caller, n in sorted(callers.items(), key=lambda kv: -kv[1])[:top]:
            print(f"    {n / messages:6.2f}  {pretty.get(caller, caller)[:160]}")
    print(f"self cost, instructions per message (total {sum(self_cost.values()) / messages:.0f}):")
    for function, cost in hottest:
        print(f"    {cost / messages:7.1f}  {pretty.get(function, function)[:160]}")


if __name__ == "__main__":
    main()
