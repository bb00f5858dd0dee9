"""The server-sent events of a streamed OpenAI response, shared by measure.py and load.py."""
import json
import time


async def sse_events(response):
    """Yields `(t, payload)` for each `data:` event of an aiohttp streamed response, `[DONE]`
    left out: `t` is `time.perf_counter()` when the read that completed the event returned
    (seconds), `payload` the event's JSON decoded."""
    buf = b""
    async for data in response.content.iter_any():
        t = time.perf_counter()
        buf += data
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            ev = ev.strip()
            if not ev.startswith(b"data:"):
                continue
            payload = ev[5:].strip()
            if payload == b"[DONE]":
                continue
            yield t, json.loads(payload)
