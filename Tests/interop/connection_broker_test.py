#!/usr/bin/env python3
"""The connection-broker protocol from a client nobody here wrote: Python `websockets`, raw JSON.

usage: connection_broker_test.py ws://127.0.0.1:PORT/

Exercises every request/response pair and notification of @sitnikov/connection-broker v0.1.1
(register, list_by_role, open, incoming_channel, message, channel_message, channel_message_sent,
close, channel_closed, channel_closed_notification) and every failure reply, checking each
field exactly (key set, types, `id` fresh and positive, `replyTo` = the request's id).
Roles carry a random suffix so the script can run repeatedly against one broker.
Prints one line per check and a closing 'N passed, N failed' line; exits 1 on failure.
"""
import asyncio
import json
import os
import re
import sys
import uuid

from websockets.asyncio.client import connect

URL = sys.argv[1]
# The server's cb_profile: "reference" (the default; replies as yusitnikov/websocket-mcp's
# broker) or "strict". Second argument, else $CB_PROFILE, else reference.
PROFILE = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("CB_PROFILE", "reference")
if PROFILE not in ("reference", "strict"):
    sys.exit(f"profile must be reference or strict, not {PROFILE!r}")
REF = PROFILE == "reference"
results = []
seen_ids = set()
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RUN = uuid.uuid4().hex[:8]


class _Any:
    pass


ANY = _Any()      # present, any value
UUID = _Any()     # a lowercase version-4 UUID string


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else "  " + detail))


def expect(name, msg, mtype, reply_to=None, **fields):
    """`msg` has exactly: type, id, replyTo (iff reply_to), and `fields`."""
    problems = []
    if msg is None:
        check(name, False, "no message")
        return msg
    keys = {"type", "id"} | ({"replyTo"} if reply_to is not None else set()) | set(fields)
    if msg.get("type") != mtype:
        problems.append(f"type {msg.get('type')!r} != {mtype!r}")
    if set(msg) != keys:
        problems.append(f"keys {sorted(msg)} != {sorted(keys)}")
    mid = msg.get("id")
    if not isinstance(mid, int) or isinstance(mid, bool) or mid <= 0:
        problems.append(f"bad id {mid!r}")
    elif mid in seen_ids:
        problems.append(f"repeated id {mid}")
    seen_ids.add(mid)
    if reply_to is not None and (msg.get("replyTo") != reply_to or isinstance(msg.get("replyTo"), bool)):
        problems.append(f"replyTo {msg.get('replyTo')!r} != {reply_to}")
    for k, v in fields.items():
        if v is ANY:
            continue
        if v is UUID:
            if not (isinstance(msg.get(k), str) and UUID_RE.match(msg[k])):
                problems.append(f"{k} {msg.get(k)!r} is not a v4 UUID")
        elif msg.get(k) != v or type(msg.get(k)) is not type(v):
            problems.append(f"{k} {msg.get(k)!r} != {v!r}")
    check(name, not problems, "; ".join(problems) + "  in " + json.dumps(msg)[:300])
    return msg


def failure(name, msg, strict_type, reply_to, strict_error, ref_error=None, **echo):
    """A failure: strict `<strict_type>` with the echoed fields and `strict_error`; reference
    `{"type":"error","error":...,"replyTo":...,"id":...}` with `ref_error` (default the same)."""
    if REF:
        return expect(name, msg, "error", reply_to, error=ref_error or strict_error)
    return expect(name, msg, strict_type, reply_to, **echo, error=strict_error)


async def closed_1003(name, text, reason):
    """reference profile: a fresh connection sends `text` and is closed 1003 with `reason`."""
    async with connect(URL) as w:
        await w.send(text)
        try:
            extra = await asyncio.wait_for(w.recv(), 5)
            check(name, False, f"got a message instead of a close: {extra!r}")
            return
        except Exception:
            pass
        got = (w.close_code, w.close_reason)
        check(name, got == (1003, reason), f"close {got!r}, expected (1003, {reason!r})")


class Client:
    def __init__(self, ws, name):
        self.ws = ws
        self.name = name
        self.next_id = 1
        self.cid = None
        self.last_text = None

    async def request(self, mtype, **fields):
        mid = self.next_id
        self.next_id += 1
        await self.ws.send(json.dumps({"type": mtype, "id": mid, **fields}))
        return mid

    async def raw(self, text):
        await self.ws.send(text)

    async def recv(self, timeout=5.0):
        try:
            text = await asyncio.wait_for(self.ws.recv(), timeout)
        except (asyncio.TimeoutError, Exception) as e:  # noqa: BLE001
            print(f"     ({self.name}: no message: {type(e).__name__})")
            return None
        if not isinstance(text, str):
            print(f"     ({self.name}: binary frame)")
            return None
        self.last_text = text
        return json.loads(text)

    async def quiet(self, seconds=0.2):
        try:
            text = await asyncio.wait_for(self.ws.recv(), seconds)
            return text
        except asyncio.TimeoutError:
            return None

    async def register(self, role):
        rid = await self.request("register", role=role)
        m = expect(f"{self.name}: register -> registered", await self.recv(), "registered", rid, connectionId=UUID)
        self.cid = m and m.get("connectionId")
        return m


async def open_channel(a, b, label):
    rid = await a.request("open", targetId=b.cid)
    opened = expect(f"{label}: open -> channel_opened", await a.recv(), "channel_opened", rid,
                    channelId=UUID, targetId=b.cid)
    ch = opened and opened.get("channelId")
    inc = await b.recv()
    expect(f"{label}: target gets incoming_channel", inc, "incoming_channel", **{"from": a.cid, "channelId": ch})
    return ch


async def main():
    alpha, beta = f"py-alpha-{RUN}", f"py-beta-{RUN}"
    async with connect(URL, compression=None) as wa, connect(URL) as wb, connect(URL) as wc, \
            connect(URL) as wx:
        a, b, c, x = Client(wa, "a"), Client(wb, "b"), Client(wc, "c"), Client(wx, "x")

        # --- before register ---
        rid = await x.request("list_by_role", role=alpha)
        if REF:
            expect("unregistered list_by_role -> connections []", await x.recv(), "connections", rid, ids=[])
        else:
            expect("unregistered list_by_role -> list_by_role_failed", await x.recv(), "list_by_role_failed", rid,
                   error="Not registered")
        ghost = str(uuid.uuid4())
        rid = await x.request("open", targetId=ghost)
        failure("unregistered open -> failure", await x.recv(), "channel_open_failed", rid,
                "Not registered", "Target connection not found", targetId=ghost)
        rid = await x.request("message", channelId=ghost, payload={"a": 1})
        failure("unregistered message -> failure", await x.recv(), "channel_message_failed", rid,
                "Not registered", "Channel not found", channelId=ghost)
        rid = await x.request("close", channelId=ghost)
        failure("unregistered close -> failure", await x.recv(), "channel_close_failed", rid,
                "Not registered", "Channel not found", channelId=ghost)
        rid = await x.request("register")
        failure("register without role -> failure", await x.recv(), "register_failed", rid,
                "Missing or invalid field: role")
        rid = await x.request("register", role=42)
        failure("register with numeric role -> failure", await x.recv(), "register_failed", rid,
                "Missing or invalid field: role")

        # --- register / list ---
        await a.register(alpha)
        await b.register(alpha)
        await c.register(beta)
        rid = await a.request("register", role=alpha)
        failure("second register -> failure", await a.recv(), "register_failed", rid, "Already registered")
        rid = await a.request("list_by_role", role=alpha)
        expect("list_by_role alpha -> connections [a, b]", await a.recv(), "connections", rid, ids=[a.cid, b.cid])
        rid = await a.request("list_by_role", role=beta)
        expect("list_by_role beta -> connections [c]", await a.recv(), "connections", rid, ids=[c.cid])
        rid = await c.request("list_by_role", role=f"py-nobody-{RUN}")
        expect("list_by_role unknown role -> connections []", await c.recv(), "connections", rid, ids=[])
        rid = await c.request("list_by_role")
        failure("list_by_role without role -> failure", await c.recv(), "list_by_role_failed", rid,
                "Missing or invalid field: role")

        # --- open ---
        ch = await open_channel(a, b, "a->b")
        rid = await a.request("open", targetId=ghost)
        failure("open unknown target -> failure", await a.recv(), "channel_open_failed", rid,
                "Target connection not found", targetId=ghost)
        rid = await a.request("open", targetId=a.cid)
        if REF:
            inc = expect("open to self: incoming_channel first", await a.recv(), "incoming_channel",
                         **{"from": a.cid, "channelId": UUID})
            own = inc and inc.get("channelId")
            expect("open to self: then channel_opened", await a.recv(), "channel_opened", rid, channelId=own,
                   targetId=a.cid)
            rid = await a.request("message", channelId=own, payload="me")
            expect("self channel: the message comes back", await a.recv(), "channel_message", channelId=own,
                   payload="me")
            expect("self channel: then channel_message_sent", await a.recv(), "channel_message_sent", rid,
                   channelId=own)
            rid = await a.request("close", channelId=own)
            expect("self channel close: notification first", await a.recv(), "channel_closed_notification",
                   channelId=own)
            expect("self channel close: then channel_closed", await a.recv(), "channel_closed", rid, channelId=own)
        else:
            expect("open to self -> channel_open_failed", await a.recv(), "channel_open_failed", rid,
                   targetId=a.cid, error="Cannot open a channel to yourself")
        rid = await a.request("open")
        failure("open without targetId -> failure", await a.recv(), "channel_open_failed", rid,
                "Missing or invalid field: targetId", "Target connection not found")

        # --- messages both ways ---
        payload = {"type": "greeting", "message": "Hello! ✓ 😀", "n": [1, 2.5, None, True], "o": {"k": "v"}}
        rid = await a.request("message", channelId=ch, payload=payload)
        m = await b.recv()
        expect("a->b message: b gets channel_message", m, "channel_message", channelId=ch, payload=payload)
        expect("a->b message: a gets channel_message_sent", await a.recv(), "channel_message_sent", rid, channelId=ch)
        # The payload is forwarded as the exact text sent (odd spacing, escapes kept).
        raw_payload = '{ "x" :[1 ,2],\t"s":"\\u00e9\\n" }'
        await a.raw('{"type":"message","id":%d,"channelId":"%s","payload":%s}' % (a.next_id, ch, raw_payload))
        rid = a.next_id
        a.next_id += 1
        m = await b.recv()
        expect("raw payload: b gets channel_message", m, "channel_message", channelId=ch,
               payload={"x": [1, 2], "s": "é\n"})
        check("raw payload: forwarded byte for byte", b.last_text is not None and b.last_text.endswith(
            '"payload":' + raw_payload + "}"), repr(b.last_text))
        expect("raw payload: a gets channel_message_sent", await a.recv(), "channel_message_sent", rid, channelId=ch)
        for p in ["text", 7, None, [], {}]:
            rid = await b.request("message", channelId=ch, payload=p)
            expect(f"b->a payload {json.dumps(p)}: a gets channel_message", await a.recv(), "channel_message",
                   channelId=ch, payload=p)
            expect(f"b->a payload {json.dumps(p)}: b gets channel_message_sent", await b.recv(),
                   "channel_message_sent", rid, channelId=ch)

        # --- message / close failures ---
        rid = await c.request("message", channelId=ch, payload={"evil": True})
        failure("non-party message -> failure", await c.recv(), "channel_message_failed", rid,
                "Channel not found", "Not authorized for this channel", channelId=ch)
        rid = await c.request("close", channelId=ch)
        failure("non-party close -> failure", await c.recv(), "channel_close_failed", rid,
                "Channel not found", "Not authorized for this channel", channelId=ch)
        check("non-party actions reach neither party", await a.quiet() is None and await b.quiet() is None)
        rid = await a.request("message", channelId=ghost, payload=1)
        failure("message on unknown channel -> failure", await a.recv(), "channel_message_failed", rid,
                "Channel not found", channelId=ghost)
        rid = await a.request("message", channelId=ch)
        if REF:
            expect("message without payload: forwarded without payload", await b.recv(), "channel_message",
                   channelId=ch)
            expect("message without payload: channel_message_sent", await a.recv(), "channel_message_sent", rid,
                   channelId=ch)
        else:
            expect("message without payload -> channel_message_failed", await a.recv(), "channel_message_failed",
                   rid, channelId=ch, error="Missing field: payload")
        rid = await a.request("message", payload=1)
        failure("message without channelId -> failure", await a.recv(), "channel_message_failed", rid,
                "Missing or invalid field: channelId", "Channel not found")
        rid = await a.request("close")
        failure("close without channelId -> failure", await a.recv(), "channel_close_failed", rid,
                "Missing or invalid field: channelId", "Channel not found")

        # --- protocol errors ---
        if REF:
            await closed_1003("malformed JSON -> close 1003", "{not json", "Invalid message format")
            await closed_1003("JSON array -> close 1003", "[1,2,3]", "Unknown request type: undefined")
            await closed_1003("unknown type -> close 1003", '{"type":"teleport","id":5}', "Unknown request type: teleport")
            await closed_1003("missing type -> close 1003", '{"id":99}', "Unknown request type: undefined")
            await x.raw(b'{"type":"register","id":1,"role":"bin"}')
            expect("binary frame -> read as text", await x.recv(), "registered", 1, connectionId=UUID)
            await x.raw('{"type":"list_by_role","id":"1","role":"s"}')
            expect("string id -> echoed as replyTo", await x.recv(), "connections", "1", ids=[])
            await x.raw('{"type":"message","payload":' + "[" * 200 + "]" * 200 + "}")
            expect("deep nesting -> error", await x.recv(), "error", error="JSON nesting too deep")
        if not REF:
            await x.raw("{not json")
            expect("malformed JSON -> error", await x.recv(), "error", error="Invalid JSON")
            await x.raw("[1,2,3]")
            expect("JSON array -> error", await x.recv(), "error", error="Invalid message: expected a JSON object")
            rid = await x.request("teleport")
            expect("unknown type -> error with replyTo", await x.recv(), "error", rid,
                   error="Unknown message type: teleport")
            await x.raw('{"id":99}')
            expect("missing type -> error with replyTo", await x.recv(), "error", 99,
                   error="Missing or invalid field: type")
            await x.raw(b'{"type":"register","id":1,"role":"bin"}')
            expect("binary frame -> error", await x.recv(), "error", error="Binary messages are not supported")
            await x.raw('{"type":"register","id":"1","role":"s"}')
            expect("string id -> register_failed without replyTo", await x.recv(), "register_failed",
                   error="Invalid field: id (expected an integer)")
            await x.raw('{"type":"message","payload":' + "[" * 200 + "]" * 200 + "}")
            expect("deep nesting -> error", await x.recv(), "error", error="JSON nesting too deep")

        # --- close ---
        rid = await a.request("close", channelId=ch)
        expect("close -> channel_closed", await a.recv(), "channel_closed", rid, channelId=ch)
        expect("other party gets channel_closed_notification", await b.recv(), "channel_closed_notification",
               channelId=ch)
        rid = await b.request("message", channelId=ch, payload=1)
        failure("message on closed channel -> failure", await b.recv(), "channel_message_failed", rid,
                "Channel not found", channelId=ch)
        rid = await b.request("close", channelId=ch)
        failure("close closed channel -> failure", await b.recv(), "channel_close_failed", rid,
                "Channel not found", channelId=ch)

        # --- disconnect ---
        ch2 = await open_channel(c, a, "c->a")
        ch3 = await open_channel(b, c, "b->c")
        await wc.close()
        expect("c disconnects: a notified", await a.recv(), "channel_closed_notification", channelId=ch2)
        expect("c disconnects: b notified", await b.recv(), "channel_closed_notification", channelId=ch3)
        rid = await a.request("list_by_role", role=beta)
        expect("c disconnected: list_by_role beta -> []", await a.recv(), "connections", rid, ids=[])
        rid = await a.request("open", targetId=c.cid)
        failure("open to disconnected -> failure", await a.recv(), "channel_open_failed", rid,
                "Target connection not found", targetId=c.cid)

    passed = sum(1 for r in results if r)
    failed = len(results) - passed
    print(f"profile {PROFILE}: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
