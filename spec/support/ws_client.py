"""WebSocket clients for spec/tipi/websocket_spec.rb, on Python's `websockets` (Debian's
python3-websockets). Prints one JSON object with what it saw.

  ws_client.py echo URL         text, binary, a fragmented message, a ping, then close
  ws_client.py many URL N       N connections open at once, one echo on each, all held, closed
  ws_client.py limit URL        a message over the server's limit: the close code
"""

import asyncio
import json
import sys

import websockets


async def echo(url):
    seen = {}
    async with websockets.connect(url, subprotocols=["chat"], max_size=None) as ws:
        seen["subprotocol"] = ws.subprotocol
        await ws.send("héllo")
        seen["text"] = await ws.recv()
        await ws.send(bytes(range(256)) * 1000)
        reply = await ws.recv()
        seen["binary"] = [type(reply).__name__, len(reply), reply == bytes(range(256)) * 1000]
        await ws.send(iter(["frag", "mented ", "message"]))  # three frames, one message
        seen["fragmented"] = await ws.recv()
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
        seen["pong"] = True
    seen["close_code"] = ws.close_code
    return seen


async def many(url, count):
    sockets = await asyncio.gather(*(websockets.connect(url, open_timeout=60) for _ in range(count)))
    held = sum(1 for ws in sockets if ws.open)

    async def one(i, ws):
        await ws.send(f"message {i}")
        return await ws.recv() == f"message {i}"

    echoed = sum(await asyncio.gather(*(one(i, ws) for i, ws in enumerate(sockets))))
    await asyncio.gather(*(ws.close() for ws in sockets))
    codes = sorted({ws.close_code for ws in sockets})
    return {"held": held, "echoed": echoed, "close_codes": codes}


async def limit(url):
    async with websockets.connect(url) as ws:
        await ws.send("a" * 2000)
        try:
            await ws.recv()
        except websockets.ConnectionClosed as e:
            return {"close_code": e.rcvd.code if e.rcvd else None, "reason": e.rcvd.reason if e.rcvd else None}
    return {"close_code": None}


def main():
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "echo":
        result = asyncio.run(echo(url))
    elif mode == "many":
        result = asyncio.run(many(url, int(sys.argv[3])))
    else:
        result = asyncio.run(limit(url))
    print(json.dumps(result))


main()
