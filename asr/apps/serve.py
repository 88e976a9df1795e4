"""`asr live --serve`: an HTTP + WebSocket caption server.

* ``GET /`` (any query string, e.g. ``/?overlay``): the caption page (large text, usable as a streaming
  overlay). It shows the server's own captions (its microphone, or a recording given with ``--input``)
  and can send the browser's microphone.
* ``/ws/captions``: JSON caption updates of the server's source, ``{"commit": "...", "tentative": "..."}``:
  ``commit`` is the text committed since the previous message (the first message carries the last
  ``HISTORY_CHARS`` characters of what was committed before the viewer came), so messages stay small however
  long the captions run.
* ``/ws/audio``: a client's own audio. First a text message ``{"sample_rate": N}`` (within
  ``FIRST_MESSAGE_SECONDS``), then binary frames of little-endian int16 mono PCM (at most
  ``MAX_FRAME_BYTES`` each), and the text message ``"end"`` when done (its last words are committed and the
  reply carries ``"final": true``); the replies are that stream's captions. A malformed or oversized frame closes only that connection (code
  1003 / 1009), a client silent for ``IDLE_SECONDS`` is closed (1008), and beyond ``max_streams`` live audio
  clients a new one is refused at once (1013, try again later) rather than slowing everyone down.

Who gets in (:class:`Access`): the Host header must name the server (on a loopback address: a loopback name, so a
page on another site that rebinds its DNS to 127.0.0.1 is refused), a browser's Origin must be the server's own
(``--allow-origin`` adds others), and with a token (``--token``, or generated when serving off loopback unless
``--no-auth``) the page and every WebSocket need ``?token=`` (the page passes its own on). TLS with
``--certfile/--keyfile`` (browsers give a page its microphone only on https off localhost). An audio client must send
at least ``MIN_REALTIME_FRACTION`` of real time (after ``RATE_GRACE_SECONDS``) or its slot is freed; at most
``MAX_VIEWERS`` caption viewers.

The streams (the server's and every client's) are shared among ``workers`` decoding threads (default: one per core,
:data:`DECODE_WORKERS`); a new client joins the thread with the fewest streams. torch releases the GIL in its kernels,
so two threads keep both cores busy (1.5x the throughput of one on 2 cores, ``docs/serving.md``) with one copy of
the weights. A thread that falls behind (a stream with more than ``BEHIND_SECONDS`` of audio queued) commits its
segments without second passes (the partial's best path) until it has caught up: partials keep flowing, and
``max_streams`` refuses clients beyond. The event loop never waits for a decoder: handlers only queue audio. Each round of a worker
moves at most one chunk of queued audio into each of its streams, decodes every ready one a chunk in one batch and
runs the second passes of the streams that reached an endpoint in that round (``Recognizer.step``), so a client
that sends faster than real time advances one chunk per round like everyone else (its
backlog makes its handler wait, which slows its socket down) instead of delaying the others. Such a client is
not timed out by keepalive pings (its pongs wait behind the audio the server is not reading yet: the audio
itself shows it is alive). A closed connection's stream leaves the worker's set at once, queued audio and all.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import ctypes.util
import functools
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import numpy as np

from asr.config import DECODE_WORKERS, MAX_LIVE_STREAMS
from asr.errors import UserError
from asr.inference.streaming import Recognizer, Segment, Stream

MAX_FRAME_BYTES = 64000  # 2 s of 16 kHz int16 audio per message at most
MAX_RATE = 192000
MAX_BACKLOG_SECONDS = 8.0  # queued, undecoded audio per client before its handler stops reading
BEHIND_SECONDS = 1.0  # a worker with a stream this far behind (queued audio) commits without second passes
FIRST_MESSAGE_SECONDS = 10.0  # a client must say its sample rate within this time
IDLE_SECONDS = 60.0  # an audio client that sends nothing for this long is closed
HISTORY_CHARS = 600  # committed text a new viewer gets before the live updates
MIN_REALTIME_FRACTION = 0.5  # an audio client sends at least half of real time (a microphone sends 1.0) ...
RATE_GRACE_SECONDS = 10.0  # ... measured from this long after its first message
MAX_VIEWERS = 100  # caption viewers at once (beyond: 1013)
TRIM_SECONDS = 10.0  # how often worker 0 gives freed heap memory back to the system (glibc: malloc_trim)
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
PAGE = Path(__file__).parent / "web" / "captions.html"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Access:
    """Who may use a server bound to ``host`` (see the module docstring): ``hosts`` the Host header values accepted
    (empty: any, off loopback, where the token guards), ``origins`` the Origins accepted beside the server's own,
    ``token`` required as ``?token=`` (None: none)."""

    hosts: frozenset = frozenset()
    origins: frozenset = frozenset()
    token: str | None = None

    @classmethod
    def for_server(cls, host: str, port: int, token: str | None = None, allow_origins=()) -> "Access":
        hosts = frozenset()
        if host in LOOPBACK:
            hosts = frozenset(f"{h}:{port}" for h in LOOPBACK) | frozenset(h for h in LOOPBACK)
        return cls(hosts, frozenset(o.rstrip("/") for o in allow_origins), token or None)

    def refusal(self, request, scheme: str) -> tuple[HTTPStatus, str] | None:
        """Why ``request`` may not in (status and reason), or None."""
        hosts = request.headers.get_all("Host")
        if len(hosts) != 1:
            return HTTPStatus.BAD_REQUEST, "one Host header\n"
        host = hosts[0]
        if self.hosts and host.lower() not in self.hosts:
            return HTTPStatus.FORBIDDEN, f"Host {host!r} is not this server\n"
        origin = request.headers.get("Origin")
        if origin is not None and origin.rstrip("/") not in self.origins | {f"{scheme}://{host}"}:
            return HTTPStatus.FORBIDDEN, f"Origin {origin!r} may not use this server (asr live --allow-origin)\n"
        if self.token is not None:
            given = (parse_qs(urlsplit(request.path).query).get("token") or [""])[0]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return HTTPStatus.UNAUTHORIZED, "a token is required: open the URL the server printed\n"
        return None


class _Source:
    """One stream and the audio queued for it: ``(rate, samples)`` blocks, ``None`` when input ended."""

    def __init__(self, stream: Stream, send=None, timing: bool = False):
        self.stream, self.send, self.timing = stream, send, timing
        self.inbox: collections.deque = collections.deque()  # appended by handlers, popped by the worker
        self.queued = 0.0  # seconds of audio in the inbox (approximate across threads; used for backpressure)
        self.max_queued = 0.0  # the most it held (the load benchmark's queued-audio figure)
        self.last = ("", None)  # (tentative, segments count) of the last message sent
        self.closed = False  # its connection is gone: the worker drops it

    def message(self, first: bool = False, final: bool = False) -> str | None:
        """The caption update since the last one (None when nothing changed): the newly committed text and the
        running partial. ``first``: a new viewer's first message, with the tail of the committed text; ``final``:
        the input ended and everything is committed (``"final": true``, sent even when nothing changed)."""
        r = self.stream.result
        state = (r.tentative, r.count)
        if state == self.last and not first and not final:
            return None
        new = [] if first else r.since(self.last[1] or 0)
        commit = _tail(r.committed, HISTORY_CHARS) if first else " ".join(seg.text for seg in new)
        self.last = state
        msg = {"commit": commit, "tentative": r.tentative, **({"final": True} if final else {})}
        if self.timing:  # stream times (s) of the tokens shown for the first time and of the committed segments' ends
            fs = self.stream.frame_seconds
            msg["shown"] = [round(f * fs, 3) for f, _ in self.stream.newly_shown]
            msg["commit_ends"] = [round(seg.words[-1].end if seg.words else seg.end, 3) for seg in new]
        return json.dumps(msg)

    def put(self, samples: np.ndarray | None, rate: int = 16000) -> None:
        """Queue ``samples`` at ``rate`` Hz (None: the input ended)."""
        if samples is not None:
            self.queued += len(samples) / rate
            self.max_queued = max(self.max_queued, self.queued)
        self.inbox.append((rate, samples))

    def pull_one_chunk(self, rec: Recognizer) -> None:
        """Move queued audio into the stream until it holds one chunk to decode (or the queue is empty)."""
        while self.inbox and not rec.is_ready(self.stream):
            rate, samples = self.inbox.popleft()
            if samples is None:
                self.stream.input_finished()
            else:
                self.queued -= len(samples) / rate
                self.stream.accept_waveform(samples, rate)


class CaptionServer:
    """Holds the streams; :meth:`step` decodes one round, :meth:`decode_forever` runs a worker's rounds in a thread.
    ``workers``: decoding threads (each owns a share of the streams)."""

    def __init__(self, recognizer: Recognizer, tick: float = 0.02,
                 on_segment: Callable[[Segment], None] | None = None, max_streams: int = MAX_LIVE_STREAMS,
                 timing: bool = False, workers: int = DECODE_WORKERS):
        if max_streams < 1 or workers < 1:
            raise UserError(f"max_streams and workers must be at least 1, not {max_streams} and {workers}")
        self.workers = workers
        self.rec = recognizer
        self.tick = tick
        self.max_streams = max_streams
        self.timing = timing  # messages carry token and segment times (asr bench-serve measures latency)
        self.finished: collections.deque = collections.deque(maxlen=1000)  # figures of the last closed clients
        self.on_segment = on_segment  # the server stream's committed segments (e.g. a transcript file)
        self.members = threading.Lock()  # guards the client set only; never held while decoding
        self.clients: set[_Source] = set()
        self.server = _Source(recognizer.create_stream())
        self.viewers: set = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.shard: dict[_Source, int] = {self.server: 0}  # the worker each stream belongs to
        self.stats = {"batches": 0, "max_batch": 0, "rejected": 0, "refused": 0, "timeouts": 0, "disconnects": 0,
                      "server_segments": 0, "server_audio_seconds": 0.0, "decode_seconds": 0.0,
                      "light_commits": 0}

    # -- the decode worker (a thread: the event loop stays free for sockets)
    def step(self, worker: int | None = None) -> bool:
        """One round of ``worker``'s streams (None: every stream): at most one chunk of new audio into each stream,
        one batched decode of every ready stream, the second passes of the streams at an endpoint (batches of
        ``asr.config.SECOND_PASS_BATCH``), caption updates sent. Returns whether anything was decoded."""
        with self.members:
            sources = [src for src in (self.server, *self.clients)
                       if not src.closed and (worker is None or self.shard.get(src) == worker)]
        for src in sources:
            src.pull_one_chunk(self.rec)
        # the live loop's round (Recognizer.step): a stream whose input ended with nothing left to decode commits its
        # last segment once (it has then ended: its client gets "final")
        behind = max((src.queued for src in sources), default=0.0) > BEHIND_SECONDS
        r = self.rec.step([src.stream for src in sources], light=behind)  # behind: partials first, no second passes
        by_stream = {id(src.stream): src for src in sources}
        for stream, seg in r.ended:
            src = by_stream[id(stream)]
            if seg is not None and src is self.server:
                self._server_segment(seg)
            if stream.ended and src is not self.server:  # its last segment (a stream ends once)
                self._send(src.send, src.message(final=True))
        with self.members:
            if r.decoded:
                self.stats["batches"] += 1
                self.stats["max_batch"] = max(self.stats["max_batch"], len(r.decoded))
                self.stats["decode_seconds"] += r.decode_seconds + r.final_seconds
            self.stats["decode_seconds"] += r.commit_seconds  # (second passes landing in a round with no chunk)
            self.stats["light_commits"] += r.light
        for src in sources:
            if src is self.server:
                continue
            msg = src.message()
            if msg is not None:
                self._send(src.send, msg)
        if self.server in sources:
            self.stats["server_audio_seconds"] = self.server.stream.seconds
            msg = self.server.message()
            if msg is not None:
                for v in list(self.viewers):
                    self._send(v.send, msg)
        return bool(r.decoded)

    def _server_segment(self, seg: Segment) -> None:
        self.stats["server_segments"] += 1
        if self.on_segment:
            self.on_segment(seg)

    def decode_forever(self, worker: int = 0) -> None:
        """Run ``worker``'s rounds until :attr:`stop` is set; then (worker 0) commit what the server stream still
        holds."""
        trimmed = time.monotonic()
        while not self.stop.is_set():
            if worker == 0 and time.monotonic() - trimmed > TRIM_SECONDS:
                trim_memory()
                trimmed = time.monotonic()
            try:
                busy = self.step(worker)
            except Exception:  # noqa: BLE001 - the worker must outlive one bad round; say what happened
                log.exception("caption worker %d: a decoding round failed", worker)
                busy = False
            if not busy:
                time.sleep(self.tick)
        if worker == 0 and not self.server.stream.ended:
            seg = self.rec.finalize(self.server.stream)  # the last segment is kept, as in the terminal
            if seg is not None:
                self._server_segment(seg)

    def start_workers(self) -> None:
        self.threads = [threading.Thread(target=self.decode_forever, args=(w,), daemon=True, name=f"caption-worker-{w}")
                        for w in range(self.workers)]
        for t in self.threads:
            t.start()

    def _admit(self, client: "_Source") -> None:
        """Add ``client`` to the worker with the fewest streams."""
        with self.members:
            load = collections.Counter(self.shard.get(c, 0) for c in (self.server, *self.clients))
            self.shard[client] = min(range(self.workers), key=lambda w: load[w])
            self.clients.add(client)

    def _leave(self, client: "_Source") -> None:
        with self.members:
            self.clients.discard(client)
            self.shard.pop(client, None)

    def _send(self, send, text: str) -> None:
        if self.loop is not None and send is not None:
            asyncio.run_coroutine_threadsafe(_safe_send(send, text), self.loop)

    # -- the server's own source
    def feed_server(self, source) -> None:
        for block, rate in source:
            if self.stop.is_set():
                break
            self.server.put(block, rate)
        self.server.put(None)

    # -- websocket handlers
    async def handler(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        path = urlsplit(ws.request.path).path
        try:
            if path == "/ws/captions":
                if len(self.viewers) >= MAX_VIEWERS:
                    self.stats["refused"] += 1
                    await ws.close(1013, f"too many viewers ({MAX_VIEWERS}); try again later")
                    return
                self.viewers.add(ws)
                try:
                    await ws.send(_Source(self.server.stream).message(first=True))
                    async for _ in ws:  # viewers send nothing; wait for them to leave
                        pass
                finally:
                    self.viewers.discard(ws)
            elif path == "/ws/audio":
                await self._audio_client(ws)
            else:
                await ws.close(1008, "unknown path")
        except ConnectionClosed:  # a client that vanished mid-message: nothing to report
            self.stats["disconnects"] += 1

    async def _audio_client(self, ws) -> None:
        with self.members:
            full = len(self.clients) >= self.max_streams
        if full:  # admission control: a clear refusal, not slowness for everyone
            self.stats["refused"] += 1
            await ws.close(1013, f"server full: {self.max_streams} live streams (--max-streams); try again later")
            return
        try:
            first = await asyncio.wait_for(ws.recv(), FIRST_MESSAGE_SECONDS)
        except (asyncio.TimeoutError, TimeoutError):
            self.stats["timeouts"] += 1
            await ws.close(1008, f'no {{"sample_rate": N}} message within {FIRST_MESSAGE_SECONDS:.0f} s')
            return
        rate = _sample_rate(first)
        if rate is None:
            self.stats["rejected"] += 1
            await ws.close(1003, f'first message must be {{"sample_rate": N}} with 8000 <= N <= {MAX_RATE}')
            return
        ws.ping_timeout = None  # a client we stop reading cannot answer pings in time; its audio shows it is alive
        client = _Source(self.rec.create_stream(), ws.send, self.timing)
        self._admit(client)
        try:
            await self._read_audio(ws, client, rate)
        finally:
            client.closed = True
            self.finished.append({"decoded_seconds": round(client.stream.seconds, 2),
                                  "undecoded_seconds": round(client.queued, 2), "max_queued_seconds": round(client.max_queued, 2),
                                  "segments": client.stream.result.count})
            client.inbox.clear()
            self._leave(client)

    async def _read_audio(self, ws, client: _Source, rate: int) -> None:
        from websockets.protocol import State

        start, received = time.monotonic(), 0.0  # seconds of audio since the first message
        while True:
            try:
                msg = await asyncio.wait_for(ws.recv(), IDLE_SECONDS)
            except (asyncio.TimeoutError, TimeoutError):
                self.stats["timeouts"] += 1
                await ws.close(1008, f"no audio for {IDLE_SECONDS:.0f} s")
                return
            elapsed = time.monotonic() - start
            if not client.stream.finished and elapsed > RATE_GRACE_SECONDS and received < MIN_REALTIME_FRACTION * elapsed:
                self.stats["timeouts"] += 1  # a slot held by a trickle of audio is a slot nobody can use
                await ws.close(1008, f"less than {MIN_REALTIME_FRACTION:g} x real time of audio: the slot is freed")
                return
            if isinstance(msg, str):
                if msg == "end":
                    client.put(None)
                    continue
                self.stats["rejected"] += 1
                await ws.close(1003, "expected binary int16 PCM frames")
                return
            if len(msg) > MAX_FRAME_BYTES or len(msg) % 2:
                self.stats["rejected"] += 1
                await ws.close(1009 if len(msg) > MAX_FRAME_BYTES else 1003,
                               f"frames must be int16 PCM of at most {MAX_FRAME_BYTES} bytes")
                return
            client.put(np.frombuffer(msg, dtype="<i2"), rate)
            received += len(msg) / 2 / rate
            while client.queued > MAX_BACKLOG_SECONDS and not self.stop.is_set():
                if ws.state is not State.OPEN:  # gone while we held it back: drop its work now
                    return
                await asyncio.sleep(0.05)  # backpressure: stop reading a client that is far ahead


@functools.cache
def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def trim_memory() -> None:
    """Give the heap memory freed by finished segments back to the system. glibc keeps it in its per-thread arenas
    (at 50 streams after 20 s: 963 MB RSS, 792 MB after a trim); elsewhere nothing."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _sample_rate(message) -> int | None:
    """The rate of a ``{"sample_rate": N}`` message, or None when it is not one (or out of range)."""
    if not isinstance(message, str):
        return None
    try:
        cfg = json.loads(message)
        rate = cfg["sample_rate"]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 8000 <= rate <= MAX_RATE:
        return None  # NaN, inf and 1e400 fail the range check
    return int(rate) if float(rate).is_integer() else None


def _tail(text: str, chars: int) -> str:
    """The last ``chars`` characters of ``text``, from a word start."""
    if len(text) <= chars:
        return text
    cut = text[-chars:]
    return cut[cut.find(" ") + 1:] if " " in cut else cut


async def _safe_send(send, text: str) -> None:
    try:
        await send(text)
    except Exception:  # noqa: BLE001 - a closed client must not disturb the others
        pass


def _process_request(connection, request, access: Access = Access(), scheme: str = "http"):
    """Refuse what :class:`Access` refuses; serve the page for plain HTTP GETs (whatever the query string); let
    WebSocket upgrades through."""
    refused = access.refusal(request, scheme)
    if refused is not None:
        return connection.respond(*refused)
    path = urlsplit(request.path).path
    if path in ("/", "/index.html"):
        resp = connection.respond(HTTPStatus.OK, PAGE.read_text(encoding="utf-8"))
        del resp.headers["Content-Type"]
        resp.headers["Content-Type"] = "text/html; charset=utf-8"
        return resp
    if path == "/healthz":
        return connection.respond(HTTPStatus.OK, "ok\n")
    if not path.startswith("/ws/"):
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
    return None


async def serve(recognizer: Recognizer, source, host: str = "127.0.0.1", port: int = 8765,
                ready: threading.Event | None = None, stop: threading.Event | None = None,
                server: CaptionServer | None = None, ping_interval: float = 20.0,
                ping_timeout: float = 20.0, access: Access | None = None, ssl_context=None) -> CaptionServer:
    """Run until ``stop`` is set (or the task is cancelled). ``source``: the server's audio (or None).
    ``server``: a :class:`CaptionServer` made by the caller (to keep its stats after Ctrl-C). Keepalive pings
    (``ping_interval``, ``ping_timeout``) close vanished viewers; audio clients are exempt from the timeout.
    ``access``: who gets in (default: :meth:`Access.for_server` of ``host`` and ``port``, no token);
    ``ssl_context``: serve https / wss."""
    from websockets.asyncio.server import serve as ws_serve

    srv = server or CaptionServer(recognizer)
    srv.loop = asyncio.get_running_loop()
    if stop is not None:
        srv.stop = stop
    srv.start_workers()
    if source is not None:
        threading.Thread(target=srv.feed_server, args=(source,), daemon=True).start()
    access = access or Access.for_server(host, port)
    scheme = "https" if ssl_context is not None else "http"
    check = functools.partial(_process_request, access=access, scheme=scheme)
    async with ws_serve(srv.handler, host, port, process_request=check, max_size=MAX_FRAME_BYTES + 1024,
                        ping_interval=ping_interval, ping_timeout=ping_timeout, ssl=ssl_context):
        if ready is not None:
            ready.set()
        try:
            while not srv.stop.is_set():
                await asyncio.sleep(0.1)
        finally:
            srv.stop.set()
    for t in srv.threads:
        t.join(timeout=5)
    return srv
