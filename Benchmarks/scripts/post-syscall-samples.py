#!/usr/bin/env python3
"""Counts a perf profile's user-mode samples, and those on the instruction right after a
`syscall` (issue 16 item 3).

Usage: post-syscall-samples.py PERF_DATA [COMM_PREFIX]
Prints: "<samples> <post-syscall samples>" for the threads whose command starts with
COMM_PREFIX (all when omitted).

Why: on this machine (AMD EPYC guest, kernel 6.18) perf's user-mode samples, and the tick that
`/proc` charges as user time, pile up on the first instruction after each system call. In
`switchboard-echo` on epoll at 1,000 connections, 91% of `sb_send`'s samples sat on the
`test %rax,%rax` after its `syscall` (RESULTS.md, 2026-12-03): a register test cannot take that
long. A timer interrupt that comes while the kernel returns to user space (interrupts off, on
the exit path's mitigations) is taken at the first user instruction, and that is time the
kernel spent. A loop with two system calls per message (epoll) is charged more of it than one
with a system call per turn (io_uring), and the figure to compare across servers is the user
time without those samples, read next to the one with them.

How: each sample's address is mapped to its file through the profile's mmap events (the file
offset is the address minus the mapping's start plus its page offset), and the two bytes
before it are read from that file: 0f 05 is `syscall`. Samples in [vdso] or in files that are
gone (a deleted memfd) are counted as not after a syscall.
"""
import subprocess
import sys


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    data = sys.argv[1]
    prefix = sys.argv[2] if len(sys.argv) > 2 else ""
    out = subprocess.run(["perf", "script", "-i", data, "--show-mmap-events", "-F", "comm,pid,ip,dso"],
                         capture_output=True, text=True, check=True).stdout
    maps = {}  # pid -> [(start, end, pgoff, path)]
    files = {}  # path -> bytes or None
    total = post = 0
    for line in out.splitlines():
        if "PERF_RECORD_MMAP" in line:
            # PERF_RECORD_MMAP2 PID/TID: [0xSTART(0xLEN) @ PGOFF ...]: PROT PATH
            try:
                head, rest = line.split("[", 1)
                pid = int(head.split()[-1].split("/")[0])
                start = int(rest.split("(")[0], 16)
                length = int(rest.split("(")[1].split(")")[0], 16)
                pgoff = int(rest.split("@ ")[1].split()[0], 16)
                path = rest.split("]: ", 1)[1].split(" ", 1)[1].strip()
            except (IndexError, ValueError):
                continue
            maps.setdefault(pid, []).append((start, start + length, pgoff, path))
            continue
        fields = line.split()
        if len(fields) < 3:
            continue
        # comm may hold spaces: pid and ip are the two fields before the "(dso)".
        try:
            dso_at = next(i for i, f in enumerate(fields) if f.startswith("("))
            pid = int(fields[dso_at - 2])
            ip = int(fields[dso_at - 1], 16)
        except (StopIteration, ValueError):
            continue
        if not " ".join(fields[:dso_at - 2]).startswith(prefix):
            continue
        total += 1
        for start, end, pgoff, path in reversed(maps.get(pid, [])):
            if start <= ip < end:
                if path not in files:
                    try:
                        with open(path, "rb") as f:
                            files[path] = f.read()
                    except OSError:
                        files[path] = None
                content = files[path]
                offset = ip - start + pgoff
                if content is not None and 2 <= offset <= len(content) and content[offset - 2:offset] == b"\x0f\x05":
                    post += 1
                break
    print(total, post)
    return 0


if __name__ == "__main__":
    sys.exit(main())
