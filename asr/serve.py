"""`asr live --serve`: an HTTP + WebSocket caption server.

* ``GET /``: the caption page (large text, usable as a streaming overlay). It shows the server's own
  captions (its microphone, or a recording given with ``--input``) and can send the browser's microphone.
* ``/ws/captions``: JSON caption updates of the server's source, ``{"committed", "tentative"}``.
* ``/ws/audio``: a client's own audio. First a text message ``{"sample_rate": N}``, then binary frames of
  little-endian int16 mono PCM (at most ``MAX_FRAME_BYTES`` each); the replies are that stream's captions.
  A malformed or oversized frame closes that connection only (code 1003 / 1009).

All streams (the server's and every client's) are decoded together in batches by one worker thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http import HTTPStatus
from pathlib import Path

import numpy as np

from asr.streaming import Recognizer, Stream

MAX_FRAME_BYTES = 64000  # 2 s of 16 kHz int16 audio per message at most
MAX_RATE = 192000
PAGE = Path(__file__).parent / "web" / "captions.html"


class _Client:
    def __init__(self, stream: Stream, send):
        self.stream, self.send = stream, send
        self.last = None


class CaptionServer:
    """Holds the streams; a worker thread decodes every ready stream in one batch, then pushes updates."""

    def __init__(self, recognizer: Recognizer, tick: float = 0.05):
        self.rec = recognizer
        self.tick = tick
        self.lock = threading.Lock()
        self.clients: set[_Client] = set()
        self.server_stream = recognizer.create_stream()
        self.viewers: set = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop = threading.Event()
        self.last_server = None
        self.stats = {"batches": 0, "max_batch": 0, "rejected": 0}

    # -- the decode worker (a thread: the event loop stays free for sockets)
    def decode_forever(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                streams = [self.server_stream] + [c.stream for c in self.clients]
                ready = [s for s in streams if self.rec.is_ready(s)]
                if ready:
                    self.rec.decode(ready)
                    self.stats["batches"] += 1
                    self.stats["max_batch"] = max(self.stats["max_batch"], len(ready))
                    for s in ready:
                        if s.is_endpoint or (s.finished and not self.rec.is_ready(s)):
                            self.rec.finalize(s)
                updates = [(c, self._payload(c.stream)) for c in list(self.clients)]
                server = self._payload(self.server_stream)
            for c, p in updates:
                if p != c.last:
                    c.last = p
                    self._send(c.send, p)
            if server != self.last_server:
                self.last_server = server
                for v in list(self.viewers):
                    self._send(v.send, server)
            if not ready:
                time.sleep(self.tick)

    @staticmethod
    def _payload(s: Stream) -> str:
        return json.dumps({"committed": s.result.committed, "tentative": s.result.tentative})

    def _send(self, send, text: str) -> None:
        if self.loop is not None:
            asyncio.run_coroutine_threadsafe(_safe_send(send, text), self.loop)

    # -- the server's own source
    def feed_server(self, source) -> None:
        for rate, block in source:
            if self.stop.is_set():
                break
            with self.lock:
                self.server_stream.accept_waveform(rate, block)
        with self.lock:
            self.server_stream.input_finished()

    # -- websocket handlers
    async def handler(self, ws) -> None:
        path = ws.request.path
        if path == "/ws/captions":
            self.viewers.add(ws)
            try:
                await ws.send(self.last_server or self._payload(self.server_stream))
                async for _ in ws:  # viewers send nothing; wait for them to leave
                    pass
            finally:
                self.viewers.discard(ws)
        elif path == "/ws/audio":
            await self._audio_client(ws)
        else:
            await ws.close(1008, "unknown path")

    async def _audio_client(self, ws) -> None:
        try:
            first = await ws.recv()
            cfg = json.loads(first) if isinstance(first, str) else None
            rate = int(cfg["sample_rate"]) if isinstance(cfg, dict) else 0
        except (ValueError, KeyError, TypeError):
            rate = 0
        if not 8000 <= rate <= MAX_RATE:
            self.stats["rejected"] += 1
            await ws.close(1003, 'first message must be {"sample_rate": N} with 8000 <= N <= 192000')
            return
        client = _Client(self.rec.create_stream(), ws.send)
        with self.lock:
            self.clients.add(client)
        try:
            async for msg in ws:
                if isinstance(msg, str):
                    if msg == "end":
                        with self.lock:
                            client.stream.input_finished()
                        continue
                    self.stats["rejected"] += 1
                    await ws.close(1003, "expected binary int16 PCM frames")
                    return
                if len(msg) > MAX_FRAME_BYTES or len(msg) % 2:
                    self.stats["rejected"] += 1
                    await ws.close(1009 if len(msg) > MAX_FRAME_BYTES else 1003,
                                   f"frames must be int16 PCM of at most {MAX_FRAME_BYTES} bytes")
                    return
                samples = np.frombuffer(msg, dtype="<i2")
                with self.lock:
                    client.stream.accept_waveform(rate, samples)
        finally:
            with self.lock:
                self.clients.discard(client)


async def _safe_send(send, text: str) -> None:
    try:
        await send(text)
    except Exception:  # noqa: BLE001 - a closed client must not disturb the others
        pass


def _process_request(connection, request):
    """Serve the page for plain HTTP GETs; let WebSocket upgrades through."""
    if request.path in ("/", "/index.html"):
        resp = connection.respond(HTTPStatus.OK, PAGE.read_text(encoding="utf-8"))
        del resp.headers["Content-Type"]
        resp.headers["Content-Type"] = "text/html; charset=utf-8"
        return resp
    if request.path == "/healthz":
        return connection.respond(HTTPStatus.OK, "ok\n")
    if not request.path.startswith("/ws/"):
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
    return None


async def serve(recognizer: Recognizer, source, host: str = "127.0.0.1", port: int = 8765,
                ready: threading.Event | None = None, stop: threading.Event | None = None) -> CaptionServer:
    """Run until ``stop`` is set (or the task is cancelled). ``source``: the server's audio (or None)."""
    from websockets.asyncio.server import serve as ws_serve

    srv = CaptionServer(recognizer)
    srv.loop = asyncio.get_running_loop()
    if stop is not None:
        srv.stop = stop
    worker = threading.Thread(target=srv.decode_forever, daemon=True)
    worker.start()
    feeder = None
    if source is not None:
        feeder = threading.Thread(target=srv.feed_server, args=(source,), daemon=True)
        feeder.start()
    async with ws_serve(srv.handler, host, port, process_request=_process_request, max_size=MAX_FRAME_BYTES + 1024):
        if ready is not None:
            ready.set()
        try:
            while not srv.stop.is_set():
                await asyncio.sleep(0.1)
        finally:
            srv.stop.set()
    worker.join(timeout=5)
    return srv
