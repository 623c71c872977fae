"""WebSocket clients against backstop, for tests/websocket.rs. Each mode prints what it
checked and exits non-zero (with a traceback) when a check fails.

  ws_client.py echo URL      text and binary both ways byte-exact, a 10 MB message,
                             then a client close with code 4000 passed through
  ws_client.py server-close URL   the upstream closes with 4001; the client sees 4001
  ws_client.py hold URL      opens, prints "open", waits for a line on stdin, then
                             checks an echo and prints "echoed", then waits for the end
  ws_client.py realtime BASE_URL  the openai SDK's Realtime client, base URL only
"""

import asyncio
import os
import sys

import websockets

HEADERS = {"Authorization": "Bearer sk-client-own", "api-key": "client-own-azure"}


def connect(url):
    return websockets.connect(url, additional_headers=HEADERS, max_size=None, compression=None)


async def echo(url):
    async with connect(url) as ws:
        assert ws.response.headers.get("x-backstop-request-id"), ws.response.headers
        for message in ["hello", "ünïcødé ✓", os.urandom(1000), b"\x00\xff" * 10]:
            await ws.send(message)
            back = await ws.recv()
            assert back == message and type(back) is type(message), (message, back)
        big = os.urandom(10 * 1024 * 1024)
        await ws.send(big)
        assert await ws.recv() == big, "10 MB message changed on the way"
        await ws.close(code=4000, reason="client done")
    assert ws.close_code == 4000, ws.close_code
    print("echo ok")


async def server_close(url):
    async with connect(url) as ws:
        await ws.send("close:4001")
        try:
            await ws.recv()
            raise AssertionError("the server did not close")
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4001, closed
    print("server close ok")


async def hold(url):
    async with connect(url) as ws:
        print("open", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await ws.send("still here")
        assert await ws.recv() == "still here"
        print("echoed", flush=True)
        try:
            await asyncio.wait_for(ws.recv(), timeout=60)
        except websockets.ConnectionClosed:
            print("closed", flush=True)


async def realtime(base_url):
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="sk-client-own")
    realtime = getattr(client, "realtime", None) or client.beta.realtime
    async with realtime.connect(model="gpt-realtime") as conn:
        first = await conn.recv()
        assert first.type == "session.created", first
        await conn.session.update(session={"type": "realtime", "instructions": "Be brief."})
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
        )
        await conn.response.create()
        seen = []
        async for event in conn:
            seen.append(event.type)
            if event.type == "response.done":
                break
        assert "response.output_text.delta" in seen, seen
    print("realtime ok:", " ".join(seen))


if __name__ == "__main__":
    mode, target = sys.argv[1], sys.argv[2]
    modes = {"echo": echo, "server-close": server_close, "hold": hold, "realtime": realtime}
    asyncio.run(modes[mode](target))
