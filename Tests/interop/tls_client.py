"""TLS checks with Python's ssl module and the websockets library (clients nobody here wrote).

Usage: tls_client.py MODE PORT CA_FILE [ARG]
  https PATH   GET https://localhost:PORT/PATH; prints "version alpn status body"
  resume       two connections, the second offering the first's session (a TLS 1.3 ticket);
               prints "full=<reused?> resumed=<reused?>"
  serial [HOST] prints the serial number of the certificate the server presents for SNI HOST
               (default localhost)
  resume-wait  like resume, but prints "ready" after the first connection and waits for a line
               on stdin before the second (the test rotates ticket keys in between)
  hold         completes a handshake, prints "ready", waits for a line on stdin, then sends a
               GET on the same connection and prints its status line (a reload must not drop it)
  wss          echo over wss://: text, binary, a fragmented message, and with permessage-deflate;
               prints "ok" or raises
  burst N BIG  over wss://, asks the server for N text messages "m0".."m<N-1>" sent in one
               handler call, with one of BIG bytes ("x" * BIG) after the first N/2; checks every
               message in order, then closes; prints "ok" or raises
  many N       N wss:// connections at once (over the event loops' look-ahead threshold on one
               shard): round 1 sends on every one before reading any echo; in round 2 every
               third sends and drops its connection at once (no close handshake) while the rest
               read theirs; the dropped ones reconnect, and round 3 sends on all again. Checks
               every echo exactly. Prints "ready" once all are connected, waits for a line on
               stdin, then runs the rounds and prints "ok" or raises
Exit status 0 on success. Certificate verification is ON (CA_FILE, host name localhost).
"""
import asyncio
import socket
import ssl
import sys


def context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def get(tls, path):
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = tls.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body.decode()


def https(port, ca, path):
    ctx = context(ca)
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            status, body = get(tls, path)
            print(tls.version(), tls.selected_alpn_protocol(), status, body)


def resume(port, ca, wait=False):
    ctx = context(ca)
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            get(tls, "/hello")  # TLS 1.3 tickets arrive after the handshake: read to the end
            session = tls.session
            first = tls.session_reused
    if wait:
        print("ready", flush=True)
        sys.stdin.readline()
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
            get(tls, "/hello")
            second = tls.session_reused
    print(f"full={first} resumed={second}")


def serial(port, ca, host):
    ctx = context(ca)
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            print(tls.getpeercert()["serialNumber"])


def hold(port, ca):
    ctx = context(ca)
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            print("ready", flush=True)
            sys.stdin.readline()
            status, _ = get(tls, "/hello")
            print(status, flush=True)


async def wss(port, ca):
    import websockets
    ctx = context(ca)
    uri = f"wss://localhost:{port}/echo"
    async with websockets.connect(uri, ssl=ctx, compression=None, max_size=None) as ws:
        await ws.send("hello over tls")
        assert await ws.recv() == "hello over tls"
        blob = bytes(range(256)) * 400  # 100 KB: several TLS records
        await ws.send(blob)
        assert await ws.recv() == blob
        await ws.send(["frag", "mented ", "message"])  # one message in three frames
        assert await ws.recv() == "fragmented message"
    async with websockets.connect(uri, ssl=ctx, compression="deflate") as ws:
        assert ws.protocol.extensions, "permessage-deflate was not negotiated"
        text = "compressible " * 1000
        await ws.send(text)
        assert await ws.recv() == text
    print("ok")


async def burst(port, ca, n, big):
    import websockets
    ctx = context(ca)
    async with websockets.connect(f"wss://localhost:{port}/echo", ssl=ctx, compression=None, max_size=None) as ws:
        await ws.send(f"burst {n} {big}")
        expected = [f"m{i}" for i in range(n // 2)] + ["x" * big] + [f"m{i}" for i in range(n // 2, n)]
        for i, want in enumerate(expected):
            got = await ws.recv()
            assert got == want, f"message {i}: {got[:40]!r} instead of {want[:40]!r}"
    print("ok")


async def many(port, ca, n):
    import websockets
    ctx = context(ca)
    uri = f"wss://localhost:{port}/echo"

    async def connect():
        return await websockets.connect(uri, ssl=ctx, compression=None, max_size=None, open_timeout=60)

    async def echo(ws, text):
        got = await asyncio.wait_for(ws.recv(), 30)
        assert got == text, f"{got!r} instead of {text!r}"

    sockets = list(await asyncio.gather(*(connect() for _ in range(n))))
    print("ready", flush=True)
    sys.stdin.readline()  # the test checks every connection is open on the server
    for i, ws in enumerate(sockets):
        await ws.send(f"round 1, socket {i}")
    await asyncio.gather(*(echo(ws, f"round 1, socket {i}") for i, ws in enumerate(sockets)))
    survivors = []
    for i, ws in enumerate(sockets):
        await ws.send(f"round 2, socket {i}")
        if i % 3 == 0:
            ws.transport.abort()  # gone at once: its echo has nowhere to go
        else:
            survivors.append(i)
    await asyncio.gather(*(echo(sockets[i], f"round 2, socket {i}") for i in survivors))
    for i in range(0, n, 3):
        sockets[i] = await connect()
    for i, ws in enumerate(sockets):
        await ws.send(f"round 3, socket {i}")
    await asyncio.gather(*(echo(ws, f"round 3, socket {i}") for i, ws in enumerate(sockets)))
    await asyncio.gather(*(ws.close() for ws in sockets))
    print("ok")


def main():
    mode, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "https":
        https(port, ca, sys.argv[4])
    elif mode == "resume":
        resume(port, ca)
    elif mode == "resume-wait":
        resume(port, ca, wait=True)
    elif mode == "serial":
        serial(port, ca, sys.argv[4] if len(sys.argv) > 4 else "localhost")
    elif mode == "hold":
        hold(port, ca)
    elif mode == "wss":
        asyncio.run(wss(port, ca))
    elif mode == "many":
        asyncio.run(many(port, ca, int(sys.argv[4])))
    elif mode == "burst":
        asyncio.run(burst(port, ca, int(sys.argv[4]), int(sys.argv[5])))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
