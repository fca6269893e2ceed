#!/usr/bin/env python3
"""A server thread's user time by the time-stamp counter over a window (issue 16 item 3).

    user-tsc-window.py FILE START_SECONDS LENGTH_SECONDS
    user-tsc-window.py --totals FILE

FILE is the counter file of a measurement build (Sources/CLiburing/sb_user_tsc.h: Switchboard
built with -DSB_USER_TSC, or the C++ peer under Benchmarks/usertsc/preload.c), named by
SB_USER_TSC_FILE. Sleeps START_SECONDS, reads the file, sleeps LENGTH_SECONDS, reads it again,
and prints, for the thread that made the most counted system calls in the window (the shard's or
the peer's event loop):

    WINDOW_SECONDS SYSCALLS USER_SECONDS TID TSC_RATE PHASE...

where USER_SECONDS is the thread's user cycles in the window over the file's TSC rate, and each
PHASE is FROM>TO:CYCLES:STRETCHES, the user stretches between a call of kind FROM and the next
of kind TO (receive, send, wait, other; turn: the top of a loop turn in a Switchboard
measurement build, not a call), most cycles first. Exits 1
when the file is missing or not yet written, or no thread made a counted call in the window.

With --totals it reads FILE once and prints its TSC rate, then one line per thread since the
process started: TID SYSCALLS USER_CYCLES PHASE... (SwitchboardBenchTests' UserTSCCounterTests
use it).
"""
import struct
import sys
import time

MAGIC = 0x4353545253554253  # "SBUSRTSC"
VERSION = 3
FILE_BYTES = 32768
BLOCK_WORDS = 64  # 512 bytes: the header, then one block per slot
SLOTS = 63
KINDS = ("receive", "send", "wait", "other", "turn")
PHASES = len(KINDS) * len(KINDS)


def read(path):
    """The file's TSC rate, and per thread id: (syscalls, cycles, phase cycles[25], phase stretches[25])."""
    with open(path, "rb") as f:
        data = f.read(FILE_BYTES)
    if len(data) != FILE_BYTES:
        sys.exit(f"{path}: {len(data)} bytes, not {FILE_BYTES}")
    words = struct.unpack(f"<{FILE_BYTES // 8}Q", data)
    if words[0] != MAGIC:
        sys.exit(f"{path}: no counter header (is the server a measurement build?)")
    if words[3] != VERSION:
        sys.exit(f"{path}: layout version {words[3]}, this reader knows {VERSION}")
    slots = {}
    for i in range(min(words[2], SLOTS)):
        b = BLOCK_WORDS * (i + 1)
        tid, syscalls, cycles = words[b:b + 3]
        if tid:
            slots[tid] = (syscalls, cycles, words[b + 8:b + 8 + PHASES], words[b + 8 + PHASES:b + 8 + 2 * PHASES])
    return words[1], slots


def phases(before, after):
    """'FROM>TO:CYCLES:STRETCHES' for each phase with a stretch in the window, most cycles first."""
    rows = []
    for phase in range(PHASES):
        cycles = after[2][phase] - (before[2][phase] if before else 0)
        stretches = after[3][phase] - (before[3][phase] if before else 0)
        if stretches:
            rows.append((cycles, f"{KINDS[phase // len(KINDS)]}>{KINDS[phase % len(KINDS)]}:{cycles}:{stretches}"))
    return " ".join(row for _, row in sorted(rows, reverse=True))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--totals":
        rate, slots = read(sys.argv[2])
        print(f"rate {rate}")
        for tid, slot in slots.items():
            print(f"{tid} {slot[0]} {slot[1]} {phases(None, slot)}")
        return
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    path, start, length = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    time.sleep(start)
    t0 = time.monotonic()
    rate, before = read(path)
    time.sleep(length)
    t1 = time.monotonic()
    _, after = read(path)
    if rate == 0:
        sys.exit(f"{path}: TSC rate 0")
    best = None
    for tid, slot in after.items():
        calls = slot[0] - before.get(tid, (0,))[0]
        if best is None or calls > best[0]:
            best = (calls, tid)
    if best is None or best[0] == 0:
        sys.exit(f"{path}: no counted system call in the window")
    tid = best[1]
    old = before.get(tid)
    cycles = after[tid][1] - (old[1] if old else 0)
    print(f"{t1 - t0:.6f} {best[0]} {cycles / rate:.9f} {tid} {rate} {phases(old, after[tid])}")


if __name__ == "__main__":
    main()
