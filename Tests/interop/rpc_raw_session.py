#!/usr/bin/env python3
"""Raw-JSON interop: Python `websockets` (sync client) speaking amqp-swarm's wire protocol to
switchboard-rpc-example, byte for byte: the seed's example session, then the inputs that crash
the reference node (non-JSON text, null, deep nesting, ...), each answered with a protocol error
while the connection keeps working.

usage: rpc_raw_session.py ws://127.0.0.1:PORT/
Prints one line per check and a closing 'N passed, N failed' line; exits 1 on failure.
"""
import json
import sys

from websockets.sync.client import connect

URL = sys.argv[1]
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else "  " + detail), flush=True)


def recv(ws):
    """The next message that is not a server ping (pings are answered, as a client must)."""
    while True:
        m = ws.recv(timeout=5)
        if isinstance(m, bytes):
            m = m.decode()
        if m.startswith('{"type":"ping"'):
            ws.send(m.replace('"type":"ping"', '"type":"pong"', 1))
            continue
        return m


def err(reason, message, cid="null", extra=""):
    return ('{"errorType":"protocol","errorSubtype":null,"message":"%s","data":{"reason":"%s"%s},'
            '"type":"error","correlationId":%s}' % (message, reason, extra, cid))


def echo_works(ws, tag):
    ws.send('{"type":"request","name":"echo","args":["%s"],"correlationId":"echo-%s"}' % (tag, tag))
    got = recv(ws)
    want = '{"type":"response","correlationId":"echo-%s","result":["%s"]}' % (tag, tag)
    check("still working after " + tag, got == want, got)


with connect(URL, max_size=None) as ws:
    first = ws.recv(timeout=5)
    check("init is the first message", first == '{"type":"init"}', repr(first))
    whoami = json.loads(recv(ws))
    check("the node asks whoami right after init",
          whoami.get("type") == "request" and whoami.get("name") == "whoami" and whoami.get("args") == [], repr(whoami))
    ws.send(json.dumps({"type": "response", "correlationId": whoami["correlationId"], "result": "python"}, separators=(",", ":")))

    # The seed's example session.
    ws.send('{"type":"ping","correlationId":"foo"}')
    ws.send('{"type":"ping","correlationId":"bar"}')
    check("pong foo", recv(ws) == '{"type":"pong","correlationId":"foo"}')
    check("pong bar", recv(ws) == '{"type":"pong","correlationId":"bar"}')
    ws.send('{"type":"request","name":"what about","args":["attack",{"by":"droids","on":"wookies"}],'
            '"correlationId":"53f55691-e6a9-4440-a3cc-38981f54124d"}')
    got = recv(ws)
    check("unknown request name: reference's unhandled error, byte for byte",
          got == '{"errorType":"protocol","errorSubtype":"unhandled","message":"No handler found for request \'what about\'",'
                 '"data":{"requestName":"what about"},"type":"error","correlationId":"53f55691-e6a9-4440-a3cc-38981f54124d"}', got)
    ws.send('{"type":"request","name":"echo","args":["attack",{"by":"droids","on":"wookies"}],"correlationId":"e1"}')
    got = recv(ws)
    check("echo keeps member order", got == '{"type":"response","correlationId":"e1","result":["attack",{"by":"droids","on":"wookies"}]}', got)
    ws.send('{"type":"request","name":"whoami-result","args":[],"correlationId":"w"}')
    got = recv(ws)
    check("whoami-result", got == '{"type":"response","correlationId":"w","result":{"result":"python"}}', got)
    ws.send('{"type":"request","name":"fail","args":[],"correlationId":"f"}')
    got = recv(ws)
    check("fail", got == '{"errorType":"endpoint","errorSubtype":null,"message":"fail","data":{"x":1},"type":"error","correlationId":"f"}', got)
    ws.send(b'{"type":"request","name":"echo","args":[1.5,-0,1e21,1e-7],"correlationId":7}')
    got = recv(ws)
    check("JSON in a binary frame; numbers as JavaScript prints them; numeric correlationId echoed",
          got == '{"type":"response","correlationId":7,"result":[1.5,0,1e+21,1e-7]}', got)

    # What crashes the reference node: each is answered, and the connection keeps working.
    hostile = [
        ("non-JSON text", "this is not json", err("notJSON", "Message is not valid JSON")),
        ("null", "null", err("notAnObject", "Message is not a JSON object")),
        ("deeply nested args",
         '{"type":"request","name":"echo","args":' + "[" * 100000 + "]" * 100000 + ',"correlationId":"d"}',
         err("tooDeep", "Message is nested too deeply")),
        ("unknown type", '{"type":"hello","correlationId":"u"}',
         err("unknownType", "Unknown message type 'hello'", '"u"', ',"type":"hello"')),
        ("missing correlationId", '{"type":"request","name":"echo","args":[]}',
         err("missingCorrelationId", "Message has no correlationId", "null", ',"type":"request"')),
        ("args not an array", '{"type":"request","name":"echo","args":"x","correlationId":"a"}',
         err("argsNotArray", "Request args is missing or not an array", '"a"', ',"type":"request"')),
        ("huge name", '{"type":"request","name":"' + "n" * 100000 + '","args":[],"correlationId":"h"}',
         err("nameTooLong", "Request name is too long", '"h"', ',"type":"request"')),
        ("binary that is not UTF-8", b'{"type":"ping","correlationId":"\xc3\x28"}', err("invalidUTF8", "Message is not valid UTF-8")),
    ]
    for name, message, want in hostile:
        ws.send(message)
        got = recv(ws)
        check(name + " -> protocol error", got == want, got[:300])
        echo_works(ws, name.replace(" ", "-"))
    ws.send('{"type":"x-custom","anything":true}')
    echo_works(ws, "x-type")
    ws.send('{"type":"error","correlationId":"nobody-asked"}')
    ws.send('{"type":"pong","correlationId":"stray"}')
    echo_works(ws, "stray-answers")

with connect(URL) as ws2:
    check("a second connection gets its own init", ws2.recv(timeout=5) == '{"type":"init"}')

print("%d passed, %d failed" % (results.count(True), results.count(False)))
sys.exit(0 if all(results) else 1)
