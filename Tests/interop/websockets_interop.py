#!/usr/bin/env python3
"""Interop with a client nobody here wrote: Python `websockets` against switchboard-echo.

usage: websockets_interop.py ws://127.0.0.1:PORT/
Sends text, binary, fragmented, large and compressed messages and checks each echo byte for
byte. Prints one line per check and a closing 'N passed, N failed' line; exits 1 on failure.
"""
import asyncio
import os
import sys

import websockets
from websockets.asyncio.client import connect

URL = sys.argv[1]
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else "  " + detail))


async def echo_checks(compression):
    label = "deflate" if compression else "plain"
    async with connect(URL, compression=compression, max_size=32 << 20) as ws:
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        check(f"{label}: extension negotiated as expected",
              ("permessage-deflate" in negotiated) == (compression is not None), negotiated)
        for text in ["hello", "", "héllo wörld ✓ 😀", "x" * 125, "y" * 126, "z" * 65536]:
            await ws.send(text)
            got = await ws.recv()
            check(f"{label}: text {len(text)} chars", got == text, repr(got)[:80])
        for size in [1, 125, 126, 65535, 65536, 1 << 20]:
            data = os.urandom(size)
            await ws.send(data)
            got = await ws.recv()
            check(f"{label}: binary {size} bytes", got == data)
        # Fragmented messages: websockets sends each element of the iterable as one frame.
        await ws.send(["frag", "men", "ted ✓"])
        check(f"{label}: fragmented text", await ws.recv() == "fragmented ✓")
        await ws.send([b"\x00\x01", b"\x02", b"\x03" * 1000])
        check(f"{label}: fragmented binary", await ws.recv() == b"\x00\x01\x02" + b"\x03" * 1000)
        compressible = "switchboard " * 100_000
        await ws.send(compressible)
        check(f"{label}: 1.2 MB compressible text", await ws.recv() == compressible)
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
        check(f"{label}: ping answered", True)
        for i in range(200):
            await ws.send(f"burst {i}")
        got = [await ws.recv() for _ in range(200)]
        check(f"{label}: 200 messages in order", got == [f"burst {i}" for i in range(200)])
    check(f"{label}: clean close", ws.close_code == 1000, str(ws.close_code))


async def main():
    await echo_checks(None)
    await echo_checks("deflate")
    passed = sum(1 for r in results if r)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


sys.exit(asyncio.run(main()))
