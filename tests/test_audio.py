"""Audio input: every supported format, rate and width decodes to 16 kHz mono; bad input gets one line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from asr.audio import SAMPLE_RATE, AudioError, load_audio, num_frames


def _write(path, x, sr, **kw):
    sf.write(str(path), x, sr, **kw)
    return path


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_wav_bit_depths(tmp_path, tone, subtype):
    p = _write(tmp_path / f"a_{subtype}.wav", tone, SAMPLE_RATE, subtype=subtype)
    y = load_audio(p)
    assert y.dtype == np.float32 and y.shape == tone.shape
    tol = 0.02 if subtype == "PCM_U8" else 1e-3
    assert np.max(np.abs(y - tone)) < tol


@pytest.mark.parametrize("fmt,ext", [("FLAC", "flac"), ("OGG", "ogg"), ("MP3", "mp3")])
def test_compressed_formats(tmp_path, tone, fmt, ext):
    p = _write(tmp_path / f"a.{ext}", tone, SAMPLE_RATE, format=fmt)
    y = load_audio(p)
    # lossy codecs add padding or lose a little level; the tone must survive
    assert abs(y.size - tone.size) < 0.1 * SAMPLE_RATE
    n = min(y.size, tone.size)
    assert abs(np.sqrt(np.mean(y[:n] ** 2)) - np.sqrt(np.mean(tone ** 2))) < 0.05


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_resampled_to_16k(tmp_path, sr):
    t = np.arange(int(sr * 1.0)) / sr
    x = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    y = load_audio(_write(tmp_path / "r.wav", x, sr))
    assert abs(y.size - SAMPLE_RATE) <= 2
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / y.size - 300) < 3  # still a 300 Hz tone


def test_stereo_downmixed(tmp_path, tone):
    stereo = np.stack([tone, -0.5 * tone], axis=1)
    y = load_audio(_write(tmp_path / "s.wav", stereo, SAMPLE_RATE))
    assert y.ndim == 1 and np.allclose(y, 0.25 * tone, atol=1e-3)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: no such file"):
        load_audio(tmp_path / "nope.wav")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: empty file"):
        load_audio(p)


def test_header_only_wav_has_no_samples(tmp_path):
    p = _write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(p)


def test_not_audio(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is a text file, not a recording\n" * 20)
    with pytest.raises(AudioError, match=r"notes\.wav: not an audio file"):
        load_audio(p)


def test_directory(tmp_path):
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)


def test_truncated_flac(tmp_path):
    rng = np.random.default_rng(1)
    x = (0.3 * rng.standard_normal(SAMPLE_RATE * 3)).astype(np.float32)
    p = _write(tmp_path / "t.flac", x, SAMPLE_RATE, format="FLAC")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match=r"t\.flac: (truncated|cannot decode)"):
        load_audio(p)


def test_nan_samples(tmp_path, tone):
    x = tone.copy()
    x[1000:1010] = np.nan
    p = _write(tmp_path / "nan.wav", x, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: 10 of 24000 samples are NaN"):
        load_audio(p)


def test_error_is_one_line(tmp_path):
    p = tmp_path / "bad.mp3"
    p.write_bytes(b"\xff\xfb" + bytes(range(256)) * 3)
    with pytest.raises(AudioError) as e:
        load_audio(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_num_frames():
    assert num_frames(399) == 0 and num_frames(400) == 1 and num_frames(559) == 1 and num_frames(560) == 2
    assert num_frames(SAMPLE_RATE) == 98


def test_cli_info_continues_past_bad_files(tmp_path, tone):
    good = _write(tmp_path / "good.wav", tone, SAMPLE_RATE)
    bad = tmp_path / "bad.wav"
    bad.write_text("garbage")
    r = subprocess.run([sys.executable, "-m", "asr.apps.cli", "info", str(bad), str(good), str(tmp_path / "gone.flac")],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "good.wav\t1.500 s" in r.stdout
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 2 and "bad.wav: not an audio file" in errors[0] and "gone.flac: no such file" in errors[1]
    assert "Traceback" not in r.stderr


def test_a_header_claiming_one_hertz_is_refused_before_decoding_and_the_batch_goes_on(tmp_path):
    """A WAV whose header says 1 Hz used to be resampled to 16 kHz from there (10 GB, then a crash)."""
    import struct

    import soundfile as sf
    from typer.testing import CliRunner

    from asr.apps.cli import app
    from asr.audio import AudioError, load_audio

    good = tmp_path / "good.wav"
    sf.write(good, (np.random.default_rng(0).standard_normal(16000) * 0.01).astype(np.float32), 16000)
    bad = tmp_path / "bad.wav"
    raw = bytearray(good.read_bytes())
    struct.pack_into("<I", raw, 24, 1)  # the fmt chunk's sample rate
    struct.pack_into("<I", raw, 28, 2)  # its byte rate
    bad.write_bytes(bytes(raw))
    with pytest.raises(AudioError, match="1 Hz"):
        load_audio(bad)
    r = CliRunner().invoke(app, ["transcribe", str(bad), str(good), "--model", "demo", "--no-progress"])
    assert r.exit_code == 1 and "bad.wav" in r.output and "1 file(s)" in r.output, r.output


def test_64_bit_integer_samples_are_16_bit_pcm_when_they_fit_and_refused_otherwise():
    from asr.audio import AudioError, as_samples

    pcm = np.array([0, 16384, -32768, 32767])  # Python ints: int64
    assert pcm.dtype == np.int64
    assert np.allclose(as_samples(pcm), [0.0, 0.5, -1.0, 32767 / 32768])
    with pytest.raises(AudioError, match="64-bit"):
        as_samples(np.array([0, 70000]))
