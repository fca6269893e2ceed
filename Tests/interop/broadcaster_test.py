#!/usr/bin/env python3
"""The broadcaster protocol from a client nobody here wrote: Python `websockets` + urllib.

usage: broadcaster_test.py ws://127.0.0.1:PORT/broadcaster http://127.0.0.1:PORT/broadcaster SECRET API_KEY

Replays the reference's own test flows (goevery/broadcaster internal/server/*_test.go): auth ->
subscribe -> REST publish -> broadcast with its fields; invalid JSON closes the connection;
subscribe without auth; unauthorized channel; missing scope; publish with the publish scope;
plus heartbeat, batch REST publish and since-recovery. Tokens are made here with hmac/base64
(stdlib). Prints one line per check and 'N passed, N failed'; exits 1 on failure.
"""
import asyncio
import base64
import hashlib
import hmac
import json
import re
import sys
import time
import urllib.error
import urllib.request

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

WS, HTTP, SECRET, API_KEY = sys.argv[1:5]
results = []
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else "  " + str(detail)))


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(sub="test-user", channels=("test-channel",), scope=("subscribe",), exp_in=3600):
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": sub, "exp": now + exp_in, "iat": now, "aud": "broadcaster",
                             "authorizedChannels": list(channels), "scope": list(scope)}).encode())
    signature = hmac.new(SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(signature)}"


def rest_publish(body, key="Bearer " + API_KEY):
    request = urllib.request.Request(HTTP + "/publish", data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Client:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 1

    async def call(self, method, params=None):
        request = {"id": self.next_id, "method": method}
        if params is not None:
            request["params"] = params
        self.next_id += 1
        await self.ws.send(json.dumps(request))
        reply = json.loads(await asyncio.wait_for(self.ws.recv(), 5))
        return request["id"], reply

    async def notification(self):
        return json.loads(await asyncio.wait_for(self.ws.recv(), 5))


async def authed(**kw):
    ws = await connect(WS + "/websocket")
    c = Client(ws)
    rid, reply = await c.call("auth", {"token": token(**kw)})
    check("auth reply", reply == {"requestId": rid, "result": {"success": True}}, reply)
    return c


async def main():
    # Successful flow (the reference's first test).
    c = await authed()
    rid, reply = await c.call("subscribe", {"channel": "test-channel"})
    result = reply.get("result", {})
    check("subscribe reply", reply.get("requestId") == rid and set(result) == {"subscriptionId", "timestamp"}
          and RFC3339.match(result["timestamp"]) is not None, reply)
    status, published = rest_publish({"channel": "test-channel", "event": "test-event", "payload": "test-payload"})
    check("REST publish 200", status == 200 and {"id", "seq", "createTime", "channel", "event", "payload"} <= set(published)
          and published.get("offset") == 1, published)
    note = await c.notification()
    params = note.get("params", {})
    check("broadcast envelope", set(note) == {"method", "params"} and note["method"] == "broadcast", note)
    check("broadcast fields", params.get("channel") == "test-channel" and params.get("payload") == "test-payload"
          and params.get("event") == "test-event" and params.get("seq") == 1 and params.get("id") == published["id"]
          and params.get("createTime") == published["createTime"] and RFC3339.match(params["createTime"]) is not None, params)
    check("broadcast position", params.get("offset") == 1 and isinstance(params.get("epoch"), str), params)
    rid, reply = await c.call("heartbeat")
    check("heartbeat", reply.get("requestId") == rid and RFC3339.match(reply.get("result", {}).get("timestamp", "")) is not None, reply)
    epoch = params.get("epoch")

    # Batch REST publish, then since-recovery on a new connection.
    status, items = rest_publish([{"channel": "test-channel", "event": "b1"}, {"channel": "bad channel"},
                                  {"channel": "test-channel", "event": "b2"}])
    check("batch REST publish", status == 200 and len(items) == 3 and items[1].get("error", {}).get("code") == "InvalidArgument", items)
    events = [(await c.notification())["params"]["event"] for _ in range(2)]
    check("batch delivered in order", events == ["b1", "b2"], events)
    await c.ws.close()

    # Invalid message: the server closes the connection.
    async with connect(WS + "/websocket") as ws:
        await ws.send("invalid-json")
        try:
            await asyncio.wait_for(ws.recv(), 5)
            check("invalid JSON closes", False, "got a reply")
        except ConnectionClosed as e:
            check("invalid JSON closes (4400)", e.rcvd is not None and e.rcvd.code == 4400, e)

    # Subscribe without auth.
    async with connect(WS + "/websocket") as ws:
        rid, reply = await Client(ws).call("subscribe", {"channel": "test-channel"})
        check("subscribe without auth", reply == {"requestId": rid, "error": {"code": "Unauthenticated", "message": "authentication required"}}, reply)

    # Unauthorized channel.
    c = await authed(channels=("another-channel",))
    rid, reply = await c.call("subscribe", {"channel": "test-channel"})
    check("unauthorized channel", reply.get("error", {}).get("code") == "Unauthenticated", reply)
    await c.ws.close()

    # Publish with the publish scope; subscribe without the subscribe scope.
    c = await authed(scope=("publish",))
    rid, reply = await c.call("publish", {"channel": "test-channel", "event": "test-event", "payload": {"foo": "bar"}})
    check("publish with publish scope", reply.get("requestId") == rid and "error" not in reply
          and reply.get("result", {}).get("payload") == {"foo": "bar"}, reply)
    rid, reply = await c.call("subscribe", {"channel": "test-channel"})
    check("subscribe without subscribe scope", reply.get("error", {}).get("code") == "PermissionDenied", reply)
    await c.ws.close()

    # Recovery: a client that saw offset 1 gets 2..4 (b1, b2, and the WebSocket publish), then live.
    c = await authed()
    rid, reply = await c.call("subscribe", {"channel": "test-channel", "since": {"offset": 1, "epoch": epoch}})
    check("since-subscribe", reply.get("result", {}).get("recovered") in (True, False) and reply.get("result", {}).get("epoch") == epoch, reply)
    recovered = reply.get("result", {}).get("recovered")
    if recovered:
        offsets = [(await c.notification())["params"]["offset"] for _ in range(3)]
        check("recovered messages in order", offsets == [2, 3, 4], offsets)
    else:
        check("history off: not recovered", True)
    await c.ws.close()

    # REST errors.
    status, _ = rest_publish({"channel": "test-channel"}, key="Bearer wrong")
    check("REST bad key 401", status == 401, status)
    status, body = rest_publish({"channel": "bad channel"})
    check("REST invalid channel 400", status == 400 and json.loads(body)["error"]["code"] == "InvalidArgument", body)

    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if passed == len(results) else 1)


asyncio.run(main())
