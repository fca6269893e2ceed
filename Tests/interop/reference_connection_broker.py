#!/usr/bin/env python3
"""Minimal reference connection broker, written from the protocol spec
(/work/shared/seeds/connection-broker.txt), for testing clients such as SwitchboardClient.

usage: reference_connection_broker.py PORT [HOST]
PORT 0 binds an ephemeral port. The first line on stdout is always the bound port.

Protocol: JSON text messages. Every message the broker sends carries a fresh auto-increment
`id`; replies carry `replyTo` (the request's id). Requests: register, list_by_role, open,
message, close; each answered by its success or *_failed response. Notifications (no replyTo):
incoming_channel, channel_message, channel_closed_notification. When a connection goes away its
channels are closed and each peer gets channel_closed_notification.
"""
import asyncio
import itertools
import json
import os
import signal
import sys
import uuid

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

_ids = itertools.count(1)
connections = {}  # connection id -> Conn
channels = {}  # channel id -> (connection id a, connection id b)


class Conn:
    def __init__(self, ws):
        self.ws = ws
        self.id = None
        self.role = None


async def send(conn, msg):
    msg["id"] = next(_ids)
    try:
        await conn.ws.send(json.dumps(msg))
    except ConnectionClosed:
        pass


async def reply(conn, request, msg):
    msg["replyTo"] = request.get("id")
    await send(conn, msg)


def other_end(channel_id, connection_id):
    a, b = channels[channel_id]
    return b if connection_id == a else a


async def handle_request(conn, msg):
    kind = msg.get("type")
    if kind == "register":
        role = msg.get("role")
        if conn.id is not None:
            await reply(conn, msg, {"type": "register_failed", "error": "Already registered"})
        elif not isinstance(role, str):
            await reply(conn, msg, {"type": "register_failed", "error": "Missing role"})
        else:
            conn.id, conn.role = str(uuid.uuid4()), role
            connections[conn.id] = conn
            await reply(conn, msg, {"type": "registered", "connectionId": conn.id})
        return
    if kind == "list_by_role":
        if conn.id is None:
            await reply(conn, msg, {"type": "list_by_role_failed", "error": "Not registered"})
        elif not isinstance(msg.get("role"), str):
            await reply(conn, msg, {"type": "list_by_role_failed", "error": "Missing role"})
        else:
            ids = [c.id for c in connections.values() if c.role == msg["role"]]
            await reply(conn, msg, {"type": "connections", "ids": ids})
        return
    if kind == "open":
        target_id = msg.get("targetId")
        target = connections.get(target_id) if isinstance(target_id, str) else None
        if conn.id is None:
            await reply(conn, msg, {"type": "channel_open_failed", "targetId": target_id, "error": "Not registered"})
        elif target is None:
            await reply(conn, msg, {"type": "channel_open_failed", "targetId": target_id,
                                    "error": "Target connection not found"})
        else:
            channel_id = str(uuid.uuid4())
            channels[channel_id] = (conn.id, target.id)
            await reply(conn, msg, {"type": "channel_opened", "channelId": channel_id, "targetId": target.id})
            await send(target, {"type": "incoming_channel", "from": conn.id, "channelId": channel_id})
        return
    if kind == "message":
        channel_id = msg.get("channelId")
        if conn.id is None or channel_id not in channels or conn.id not in channels[channel_id]:
            await reply(conn, msg, {"type": "channel_message_failed", "channelId": channel_id,
                                    "error": "Channel not found"})
            return
        peer = connections.get(other_end(channel_id, conn.id))
        if peer is None:
            await reply(conn, msg, {"type": "channel_message_failed", "channelId": channel_id,
                                    "error": "Peer not connected"})
            return
        await send(peer, {"type": "channel_message", "channelId": channel_id, "payload": msg.get("payload")})
        await reply(conn, msg, {"type": "channel_message_sent", "channelId": channel_id})
        return
    if kind == "close":
        channel_id = msg.get("channelId")
        if conn.id is None or channel_id not in channels or conn.id not in channels[channel_id]:
            await reply(conn, msg, {"type": "channel_close_failed", "channelId": channel_id,
                                    "error": "Channel not found"})
            return
        peer = connections.get(other_end(channel_id, conn.id))
        del channels[channel_id]
        await reply(conn, msg, {"type": "channel_closed", "channelId": channel_id})
        if peer is not None:
            await send(peer, {"type": "channel_closed_notification", "channelId": channel_id})
        return
    print(f"ignoring message of type {kind!r}", file=sys.stderr, flush=True)


async def handler(ws):
    conn = Conn(ws)
    try:
        async for text in ws:
            try:
                msg = json.loads(text)
            except ValueError:
                print("ignoring non-JSON message", file=sys.stderr, flush=True)
                continue
            if isinstance(msg, dict):
                await handle_request(conn, msg)
    except ConnectionClosed:
        pass
    finally:
        if conn.id is not None:
            connections.pop(conn.id, None)
            for channel_id in [c for c, ends in channels.items() if conn.id in ends]:
                peer = connections.get(other_end(channel_id, conn.id))
                del channels[channel_id]
                if peer is not None:
                    await send(peer, {"type": "channel_closed_notification", "channelId": channel_id})


async def main():
    # Exit at once on SIGTERM (test harnesses stop the broker this way).
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    async with serve(handler, host, port, max_size=16 << 20, compression=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
