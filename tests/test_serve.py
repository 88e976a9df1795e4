"""`asr live --serve`: the page, two concurrent audio clients, malformed frames, and a headless browser."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from asr.apps.live import file_source
from asr.apps.serve import MAX_FRAME_BYTES, serve
from asr.inference.model_dir import load_model
from asr.inference.streaming import Recognizer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(request):
    model, source = request.param if hasattr(request, "param") else ("random", None)
    return model, source


def _start(rec, source):
    port = _free_port()
    ready, stop = threading.Event(), threading.Event()
    box = {}

    def run():
        box["srv"] = asyncio.run(serve(rec, source, "127.0.0.1", port, ready=ready, stop=stop))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(30)
    return port, stop, t, box


def test_page_two_clients_and_bad_frames(random_model_dir, speech_clips):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    rec = Recognizer(load_model(random_model_dir))
    port, stop, t, box = _start(rec, None)
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/").read().decode()
        assert "/ws/captions" in page and "<html" in page
        audio = [sf.read(speech_clips[i].path, dtype="float32")[0][: 16000 * 4] for i in (0, 1)]
        results = [None, None]

        def client(i):
            with connect(f"ws://127.0.0.1:{port}/ws/audio") as ws:
                ws.send(json.dumps({"sample_rate": 16000}))
                pcm = (audio[i] * 32767).astype("<i2").tobytes()
                for k in range(0, len(pcm), 6400):
                    ws.send(pcm[k:k + 6400])
                ws.send("end")
                committed, last = [], None
                deadline = time.time() + 30
                while time.time() < deadline:
                    try:
                        last = json.loads(ws.recv(timeout=3))
                    except TimeoutError:
                        break
                    if last["commit"]:
                        committed.append(last["commit"])
                    if committed and not last["tentative"]:
                        break
                results[i] = {"committed": " ".join(committed), "last": last}

        def bad_client(kind):
            with connect(f"ws://127.0.0.1:{port}/ws/audio", max_size=None) as ws:
                if kind == "no-config":
                    ws.send(b"\x00\x01")
                else:
                    ws.send(json.dumps({"sample_rate": 16000}))
                    ws.send(b"\x00" * (MAX_FRAME_BYTES + 2))
                with pytest.raises(ConnectionClosed) as e:
                    while True:
                        ws.recv(timeout=10)
                return e.value.rcvd.code

        threads = [threading.Thread(target=client, args=(i,)) for i in (0, 1)]
        for th in threads:
            th.start()
        codes = [bad_client("no-config"), bad_client("oversized")]
        for th in threads:
            th.join(60)
        assert codes == [1003, 1009]
        assert all(r is not None and r["committed"] for r in results), results
        assert results[0]["committed"] != results[1]["committed"]
    finally:
        stop.set()
        t.join(10)
    srv = box["srv"]
    assert srv.stats["rejected"] == 2 and srv.stats["max_batch"] >= 1


def _chromium_path() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed: tools/setup.sh installs it")
    return chromium


def _launch(p, chromium: str):
    try:
        return p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    except Exception as e:  # noqa: BLE001 - a browser that cannot start here is a skip, not a failure
        pytest.skip(f"headless Chromium could not start: {str(e).splitlines()[0]}")


def test_browser_page_shows_captions_of_a_recording(speech_clips):
    """Headless Chromium loads the page while the server captions a recording with the demo model."""
    from playwright.sync_api import sync_playwright

    chromium = _chromium_path()
    rec = Recognizer(load_model("demo"))
    wav = speech_clips[0].path
    port, stop, t, _ = _start(rec, file_source(wav, realtime=True))
    try:
        with sync_playwright() as p:
            browser = _launch(p, chromium)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function(
                "document.getElementById('committed').textContent.trim().split(' ').length >= 3", timeout=60000)
            text = page.inner_text("#committed")
            browser.close()
        assert len(text.split()) >= 3
    finally:
        stop.set()
        t.join(10)
    _ = np


def test_overlay_page_two_lines_transparent_clears_and_reconnects(speech_clips):
    """Headless Chromium on ``?overlay``: no buttons, transparent background (screenshot alpha), caption pixels
    in the requested colour, at most two lines, cleared after a silence, and reconnect attempts when the server
    goes away."""
    import io

    from PIL import Image
    from playwright.sync_api import sync_playwright

    chromium = _chromium_path()
    rec = Recognizer(load_model("demo"))
    clip = min(speech_clips[:4], key=lambda c: sf.info(str(c.path)).duration)
    port, stop, t, _ = _start(rec, file_source(clip.path, realtime=True))
    stopped = False
    try:
        with sync_playwright() as p:
            browser = _launch(p, chromium)
            page = browser.new_page(viewport={"width": 640, "height": 360})
            page.goto(f"http://127.0.0.1:{port}/?overlay&lines=2&size=28px&color=%23ffff00&tentative=%23ffff00&clear=1")
            assert not page.is_visible("#mic")  # no buttons on the overlay
            page.wait_for_function("document.getElementById('committed').textContent.trim().split(' ').length >= 2",
                                   timeout=60000)
            page.evaluate("document.getElementById('committed').textContent = 'word '.repeat(80)")  # many lines
            shot = Image.open(io.BytesIO(page.screenshot(omit_background=True))).convert("RGBA")
            height = page.evaluate("document.getElementById('captions').getBoundingClientRect().height")
            px = np.asarray(shot)
            assert px[5, 5, 3] == 0 and px[5, -5, 3] == 0  # transparent background
            yellow = (px[..., 0] > 200) & (px[..., 1] > 200) & (px[..., 2] < 80) & (px[..., 3] > 200)
            rows = np.nonzero(yellow.any(1))[0]
            assert yellow.sum() > 200 and rows.min() > 360 * 0.5  # caption pixels, in the lower half
            assert height <= 2 * 28 * 1.3 + 12  # two lines (and padding) only
            page.wait_for_function("window.asrState.cleared >= 1", timeout=30000)  # silence after the recording
            assert page.inner_text("#committed").strip() == ""
            stop.set()
            t.join(10)
            stopped = True
            page.wait_for_function("window.asrState.reconnects >= 1", timeout=20000)
            browser.close()
    finally:
        if not stopped:
            stop.set()
            t.join(10)


def _start_with(rec, access=None, ssl_context=None):
    port = _free_port()
    ready, stop = threading.Event(), threading.Event()

    def run():
        asyncio.run(serve(rec, None, "127.0.0.1", port, ready=ready, stop=stop,
                          access=access(port) if access else None, ssl_context=ssl_context))

    threading.Thread(target=run, daemon=True).start()
    assert ready.wait(30)
    return port, stop


def _status(url: str, headers: dict | None = None, context=None) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10, context=context) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_another_site_cannot_read_the_captions_or_rebind_the_host(random_model_dir):
    """A page on evil.example that opens ws://127.0.0.1:PORT/ws/captions (its Origin) is refused, and so is a
    request whose Host is not the server's (DNS rebinding); the server's own page and plain clients get in."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    port, stop = _start_with(Recognizer(load_model(random_model_dir)))
    try:
        with pytest.raises(InvalidStatus, match="403"):
            connect(f"ws://127.0.0.1:{port}/ws/captions", origin="http://evil.example", open_timeout=10)
        with pytest.raises(InvalidStatus, match="403"):  # a name that resolved to 127.0.0.1: DNS rebinding
            connect(f"ws://attacker.example:{port}/ws/captions", sock=socket.create_connection(("127.0.0.1", port)),
                    open_timeout=10)
        assert _status(f"http://127.0.0.1:{port}/", {"Host": "attacker.example"}) == 403
        with connect(f"ws://127.0.0.1:{port}/ws/captions", origin=f"http://127.0.0.1:{port}", open_timeout=10) as ws:
            assert "commit" in json.loads(ws.recv(timeout=10))
        with connect(f"ws://localhost:{port}/ws/captions", open_timeout=10) as ws:  # no Origin: not a browser page
            ws.recv(timeout=10)
        assert _status(f"http://127.0.0.1:{port}/") == 200
    finally:
        stop.set()


def test_a_token_guards_the_page_and_every_socket(random_model_dir):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from asr.apps.serve import Access

    port, stop = _start_with(Recognizer(load_model(random_model_dir)),
                             access=lambda p: Access.for_server("127.0.0.1", p, "s3cret", ["https://ok.example"]))
    try:
        assert _status(f"http://127.0.0.1:{port}/") == 401
        assert _status(f"http://127.0.0.1:{port}/?token=wrong") == 401
        assert _status(f"http://127.0.0.1:{port}/?token=s3cret") == 200
        for q in ("", "?token=wrong"):
            with pytest.raises(InvalidStatus, match="401"):
                connect(f"ws://127.0.0.1:{port}/ws/audio{q}", open_timeout=10)
        with connect(f"ws://127.0.0.1:{port}/ws/captions?token=s3cret", origin="https://ok.example",
                     open_timeout=10) as ws:  # an allowed origin with the token
            ws.recv(timeout=10)
    finally:
        stop.set()


def test_a_client_that_trickles_audio_loses_its_slot(random_model_dir, monkeypatch):
    """One sample every half second keeps a connection open but sends 1/8000 of real time: closed (1008)."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    import asr.apps.serve as serve_mod

    monkeypatch.setattr(serve_mod, "RATE_GRACE_SECONDS", 1.0)
    port, stop = _start_with(Recognizer(load_model(random_model_dir)))
    try:
        with connect(f"ws://127.0.0.1:{port}/ws/audio", open_timeout=10) as ws:
            ws.send(json.dumps({"sample_rate": 16000}))
            with pytest.raises(ConnectionClosed) as e:
                for _ in range(20):
                    ws.send(np.zeros(1, dtype="<i2").tobytes())
                    time.sleep(0.5)
            assert e.value.rcvd.code == 1008 and "real time" in e.value.rcvd.reason
    finally:
        stop.set()


def test_the_page_is_served_over_tls(random_model_dir, tmp_path):
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (it makes the test's self-signed certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    from asr.apps.live import server_access

    access, ctx, url = server_access("127.0.0.1", 0, certfile=cert, keyfile=key)
    assert url.startswith("https://") and ctx is not None
    port, stop = _start_with(Recognizer(load_model(random_model_dir)),
                             access=lambda p: server_access("127.0.0.1", p)[0], ssl_context=ctx)
    try:
        client = ssl.create_default_context(cafile=str(cert))
        client.check_hostname = False
        assert _status(f"https://127.0.0.1:{port}/", context=client) == 200
    finally:
        stop.set()


def test_serving_off_loopback_generates_a_token_unless_told_not_to():
    from asr.apps.live import server_access

    access, _, url = server_access("0.0.0.0", 8765)
    assert access.token and f"?token={access.token}" in url and not access.hosts
    assert server_access("0.0.0.0", 8765, no_auth=True)[0].token is None
    assert server_access("127.0.0.1", 8765)[0].token is None
    assert server_access("0.0.0.0", 8765, token="mine")[2].endswith("?token=mine")


def test_streams_are_shared_among_the_decoding_threads_and_each_decodes_only_its_own(random_model_dir, speech_clips):
    from asr.apps.serve import CaptionServer, _Source

    rec = Recognizer(load_model(random_model_dir))
    srv = CaptionServer(rec, workers=2)
    a, b, c = (_Source(rec.create_stream()) for _ in range(3))
    for x in (a, b, c):
        srv._admit(x)
    assert [srv.shard[x] for x in (a, b, c)] == [1, 0, 1]  # the server's own stream is worker 0's
    audio = sf.read(speech_clips[0].path, dtype="float32")[0][: 16000 * 2]
    for x in (a, b, c):
        x.put(audio)
    srv.step(1)
    assert a.stream.stats["chunks"] == c.stream.stats["chunks"] == 1 and b.stream.stats["chunks"] == 0
    srv.step(0)
    assert b.stream.stats["chunks"] == 1 and a.stream.stats["chunks"] == 1
    srv._leave(a)
    d = _Source(rec.create_stream())
    srv._admit(d)
    assert srv.shard[d] == 1  # the freed place


def test_a_decoding_thread_that_falls_behind_commits_without_second_passes(speech_clips):
    """A stream with more than BEHIND_SECONDS of audio queued: its thread commits segments without second passes
    until it catches up (partials first); a client fed in real time gets every second pass."""
    from asr.apps.serve import BEHIND_SECONDS, CaptionServer, _Source

    rec = Recognizer(load_model("demo"))  # the pause after the first utterance ends a segment
    audio = sf.read(speech_clips[0].path, dtype="float32")[0]
    audio = np.concatenate([audio, np.zeros(16000, np.float32), audio])
    assert audio.size / 16000 > 3 * BEHIND_SECONDS

    def light_commits(ahead: bool) -> int:
        srv = CaptionServer(rec, workers=1)
        client = _Source(rec.create_stream())
        srv._admit(client)
        for i in range(0, audio.size, 1600):  # 100-ms blocks, as a client sends them
            client.put(audio[i:i + 1600])
            if not ahead:
                srv.step()  # decoded as they come
        client.put(None)
        while not client.stream.ended:
            srv.step()
        assert client.stream.result.count >= 1
        return srv.stats["light_commits"]

    assert light_commits(ahead=True) >= 1  # everything queued before the first round: behind
    assert light_commits(ahead=False) == 0  # a round per block: never behind


def test_the_server_admits_as_many_clients_as_were_measured_for_the_committing_model(random_model_dir, tmp_path):
    """--max-streams 0 (the default): the capacity in the committing model's serving.json (the demo 20, Whisper 1:
    its commits are the cost), else asr.config.MAX_LIVE_STREAMS; a damaged file is one line."""
    from asr.apps.live import server_max_streams
    from asr.config import MAX_LIVE_STREAMS
    from asr.errors import UserError
    from asr.inference.streaming import live_recognizer

    d = tmp_path / "m"
    shutil.copytree(random_model_dir, d)
    assert server_max_streams(Recognizer(load_model(d))) == MAX_LIVE_STREAMS  # not measured
    assert server_max_streams(Recognizer(load_model(d)), 7) == 7  # given
    (d / "serving.json").write_text('{"max_streams": 3, "measured": "asr bench-serve"}')
    assert server_max_streams(Recognizer(load_model(d))) == 3
    assert server_max_streams(Recognizer(load_model("demo"))) == 20
    assert server_max_streams(live_recognizer(load_model("whisper-tiny-en"))) == 1  # Whisper commits: its figure
    (d / "serving.json").write_text('{"max_streams": 0}')
    with pytest.raises(UserError, match="serving.json: max_streams must be a positive integer"):
        server_max_streams(Recognizer(load_model(d)))
