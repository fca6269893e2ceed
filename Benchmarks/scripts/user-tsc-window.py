#!/usr/bin/env python3
"""A server thread's user time by the time-stamp counter over a window (issue 16 item 3).

    user-tsc-window.py FILE START_SECONDS LENGTH_SECONDS
    user-tsc-window.py --totals FILE

FILE is the counter file of a measurement build (Sources/CLiburing/sb_user_tsc.h: Switchboard
built with -DSB_USER_TSC, or the C++ peer under Benchmarks/usertsc/preload.c), named by
SB_USER_TSC_FILE. Sleeps START_SECONDS, reads the file, sleeps LENGTH_SECONDS, reads it again,
and prints, for the thread that made the most counted system calls in the window (the shard's or
the peer's event loop):

    WINDOW_SECONDS SYSCALLS USER_SECONDS TID

where USER_SECONDS is the thread's user cycles in the window over the file's TSC rate. Exits 1
when the file is missing or not yet written, or no thread made a counted call in the window.

With --totals it reads FILE once and prints its TSC rate, then one line per thread since the
process started: TID SYSCALLS USER_CYCLES (SwitchboardBenchTests' UserTSCCounterTests use it).
"""
import struct
import sys
import time

MAGIC = 0x4353545253554253  # "SBUSRTSC"
HEADER_WORDS = 8
SLOT_WORDS = 8
SLOTS = 63


def read(path):
    with open(path, "rb") as f:
        data = f.read(4096)
    if len(data) != 4096:
        sys.exit(f"{path}: {len(data)} bytes, not 4096")
    words = struct.unpack("<512Q", data)
    if words[0] != MAGIC:
        sys.exit(f"{path}: no counter header (is the server a measurement build?)")
    slots = {}
    for i in range(min(words[2], SLOTS)):
        tid, syscalls, cycles = words[HEADER_WORDS + i * SLOT_WORDS:HEADER_WORDS + i * SLOT_WORDS + 3]
        if tid:
            slots[tid] = (syscalls, cycles)
    return words[1], slots


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--totals":
        rate, slots = read(sys.argv[2])
        print(f"rate {rate}")
        for tid, (syscalls, cycles) in slots.items():
            print(f"{tid} {syscalls} {cycles}")
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
    for tid, (syscalls, cycles) in after.items():
        s0, c0 = before.get(tid, (0, 0))
        delta = (syscalls - s0, cycles - c0, tid)
        if best is None or delta[0] > best[0]:
            best = delta
    if best is None or best[0] == 0:
        sys.exit(f"{path}: no counted system call in the window")
    print(f"{t1 - t0:.6f} {best[0]} {best[1] / rate:.9f} {best[2]}")


if __name__ == "__main__":
    main()
