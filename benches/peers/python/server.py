"""Benchmark peer: the `/ai` relay as people write it with python-socketio.

python-socketio's asyncio server on aiohttp, driven by the same load
generator and the same fake Ollama upstream as streamgate (benches/loadgen).

Data flow: a client connects to namespace `/ai` and gets `ai:connected`;
`ai:stream` (answered through its ack) starts one task that POSTs
`/api/chat` to the upstream with an aiohttp ClientSession and relays each
NDJSON line as one `ai:token` event (same payload shape as streamgate's);
the `done` line becomes `ai:stream:complete` + `ai:done`. `ai:cancel`
cancels the task, which closes the upstream response, and emits
`ai:stream:cancelled`. Idiomatic, no artificial slowness.
"""

import asyncio
import itertools
import json
import os
import time

import aiohttp
import socketio
from aiohttp import web

PORT = int(os.environ.get("PORT", "3200"))
UPSTREAM = os.environ.get("OLLAMA_BASE_URL", "http://127.0.0.1:11434").rstrip("/")
MODEL = os.environ.get("OLLAMA_DEFAULT_MODEL", "llama3.2")
NS = "/ai"

sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
app = web.Application()
sio.attach(app)

streams: dict[str, dict[str, asyncio.Task]] = {}  # sid -> streamId -> task
ids = itertools.count(1)
http: aiohttp.ClientSession | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


@sio.on("connect", namespace=NS)
async def connect(sid, environ, auth=None):
    streams[sid] = {}
    await sio.emit("ai:connected", {
        "clientId": f"c_{next(ids)}",
        "resumeToken": "",
        "maxConcurrentStreams": 10,
        "backpressureThreshold": 100,
        "backpressurePolicy": "coalesce",
        "ackWindow": 256,
        "heartbeatIntervalMs": 30000,
        "reconnectWindowMs": 30000,
        "serverVersion": "peer-python",
        "timestamp": now_ms(),
    }, to=sid, namespace=NS)


@sio.on("disconnect", namespace=NS)
async def disconnect(sid, *args):
    for task in streams.pop(sid, {}).values():
        task.cancel()


@sio.on("ai:stream", namespace=NS)
async def stream(sid, req):
    if not isinstance(req, dict) or not isinstance(req.get("prompt"), str) or not req["prompt"]:
        return {"ok": False, "error": {"code": "invalid_request", "message": "prompt is required"}}
    live = streams.setdefault(sid, {})
    stream_id = req.get("streamId") or f"s_{next(ids)}"
    if stream_id in live:
        return {"ok": False, "error": {"code": "duplicate_stream_id", "message": "streamId is live"}}
    live[stream_id] = asyncio.create_task(relay(sid, stream_id, req))
    return {"ok": True, "streamId": stream_id}


@sio.on("ai:cancel", namespace=NS)
async def cancel(sid, req):
    task = streams.get(sid, {}).get((req or {}).get("streamId"))
    if task is None:
        await sio.emit("ai:error", {"code": "unknown_stream", "error": "no such live stream",
                                    "details": {}}, to=sid, namespace=NS)
        return
    task.cancel()


async def relay(sid, stream_id, req):
    started = time.monotonic()
    token_count = 0
    model = req.get("model") or MODEL
    body = {
        "model": model,
        "messages": list(req.get("messages") or []) + [{"role": "user", "content": req["prompt"]}],
        "stream": True,
    }
    try:
        async with http.post(f"{UPSTREAM}/api/chat", json=body) as res:
            if res.status != 200:
                raise RuntimeError(f"upstream HTTP {res.status}")
            await sio.emit("ai:stream:start", {
                "streamId": stream_id, "provider": "ollama", "model": model,
                "agent": None, "intent": None, "timestamp": now_ms(),
            }, to=sid, namespace=NS)
            finished = False
            async for line in res.content:
                line = line.strip()
                if not line:
                    continue
                msg = json.loads(line)
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                content = (msg.get("message") or {}).get("content")
                if content:
                    token_count += 1
                    await sio.emit("ai:token", {"streamId": stream_id, "data": content,
                                                "tokenCount": token_count, "agent": None},
                                   to=sid, namespace=NS)
                if msg.get("done"):
                    finished = True
                    await sio.emit("ai:stream:complete", {"streamId": stream_id, "agent": None,
                                                          "intent": None, "confidence": None},
                                   to=sid, namespace=NS)
                    await sio.emit("ai:done", {
                        "streamId": stream_id, "totalTokens": token_count,
                        "duration": int((time.monotonic() - started) * 1000),
                        "finishReason": msg.get("done_reason") or "stop",
                        "usage": {"promptTokens": msg.get("prompt_eval_count"),
                                  "completionTokens": msg.get("eval_count")},
                        "droppedTokens": 0,
                    }, to=sid, namespace=NS)
            if not finished:
                raise RuntimeError("stream ended before its done line")
    except asyncio.CancelledError:
        # ai:cancel or disconnect: leaving the `async with` closed the upstream.
        if sid in streams:
            await sio.emit("ai:stream:cancelled", {"streamId": stream_id, "reason": "client",
                                                   "tokenCount": token_count}, to=sid, namespace=NS)
    except Exception as err:  # noqa: BLE001 - any upstream failure ends the stream
        await sio.emit("ai:stream:error", {"streamId": stream_id, "code": "upstream_error",
                                           "error": str(err), "retryable": True},
                       to=sid, namespace=NS)
    finally:
        streams.get(sid, {}).pop(stream_id, None)


async def on_startup(_app):
    global http
    # No connection cap: streamgate and the Node peer don't cap either.
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                 timeout=aiohttp.ClientTimeout(total=None))


async def on_cleanup(_app):
    if http is not None:
        await http.close()


app.on_startup.append(on_startup)
app.on_cleanup.append(on_cleanup)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=PORT, print=None, access_log=None)
