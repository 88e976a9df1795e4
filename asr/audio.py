"""Audio input: decode any supported file to 16 kHz mono float32, with one-line errors.

This module is the one home of the sample rate and the constants derived from it
(Whisper's ``audio.py`` does the same): features, streaming and timestamps import them.

Supported: wav, flac, ogg/vorbis/opus, mp3 (through libsndfile), any sample rate (resampled
with soxr), any channel count (averaged to mono), 8/16/24/32-bit integer and float samples.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from asr.errors import UserError

SAMPLE_RATE = 16000  # Hz, everything inside the toolkit runs at this rate
FRAME_SHIFT_MS = 10  # fbank hop
FRAME_LENGTH_MS = 25  # fbank window
HOP_SAMPLES = SAMPLE_RATE * FRAME_SHIFT_MS // 1000  # 160 samples per feature frame
WIN_SAMPLES = SAMPLE_RATE * FRAME_LENGTH_MS // 1000  # 400 samples per feature window


class AudioError(UserError):
    """A file could not be used as audio. ``str(err)`` is one line: ``"PATH: cause"``."""

    def __init__(self, path: str | os.PathLike, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


def num_frames(num_samples: int) -> int:
    """Feature frames that kaldi-style fbank (snip_edges) yields for ``num_samples`` samples."""
    if num_samples < WIN_SAMPLES:
        return 0
    return 1 + (num_samples - WIN_SAMPLES) // HOP_SAMPLES


def resample(samples: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a mono float32 signal ``(T,)`` from ``orig_sr`` to ``target_sr`` (soxr, high quality)."""
    if orig_sr == target_sr:
        return samples.astype(np.float32, copy=False)

    return soxr.resample(samples, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """``(T,)`` or ``(T, C)`` -> ``(T,)`` float32, channels averaged."""
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    return samples.astype(np.float32, copy=False)


def check_samples(samples: np.ndarray, path: str | os.PathLike = "<array>") -> np.ndarray:
    """Reject empty or non-finite audio with an :class:`AudioError`; return the samples unchanged."""
    if samples.size == 0:
        raise AudioError(path, "no audio samples (empty recording)")
    if not np.isfinite(samples.sum(dtype=np.float64)):  # a NaN or inf makes the sum so (no mask the size of the audio)
        bad = int((~np.isfinite(samples)).sum())
        if bad:
            raise AudioError(path, f"{bad} of {samples.size} samples are NaN or infinite")
    return samples


MIN_RATE, MAX_RATE = 1000, 768000


def as_samples(audio, sample_rate=SAMPLE_RATE, where: str = "<array>", allow_empty: bool = False) -> np.ndarray:
    """Samples a caller gives (a file's are read by :func:`load_audio`) -> mono float32 in [-1, 1] at
    ``sample_rate`` (not resampled): integer PCM scaled (int16, int32, uint8; 64-bit integers, as ``np.array`` makes
    of Python ints, are taken as 16-bit PCM when every value fits, else refused), ``(N, C)`` or ``(C, N)`` averaged over
    channels (the longer axis is time). Empty (unless ``allow_empty``: a streaming block), non-finite samples, more
    than two dimensions and a sample rate outside 1 kHz-768 kHz are an :class:`AudioError` naming ``where``. The one
    check that batch transcription, the API and every stream apply."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer, np.floating)) \
            or not MIN_RATE <= sample_rate <= MAX_RATE or float(sample_rate) != int(sample_rate):
        raise AudioError(where, f"sample rate must be a whole number of Hz in {MIN_RATE}..{MAX_RATE}, not {sample_rate!r}")
    x = audio.detach().cpu().numpy() if hasattr(audio, "detach") else np.asarray(audio)
    if x.dtype.itemsize == 8 and x.dtype.kind in "iu":  # np.array of Python ints: 64-bit, as no PCM format is
        if x.size and (x.min() < -32768 or x.max() > 32767):
            raise AudioError(where, "64-bit integer samples outside the 16-bit range: give float samples in [-1, 1] "
                                    "or PCM as int16 / int32")
        x = x.astype(np.int16)  # every value fits: 16-bit PCM written as Python ints
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        x = (x.astype(np.float32) - (info.max + 1) / 2 if x.dtype.kind == "u" else x.astype(np.float32)) \
            / float(-(info.min) if x.dtype.kind == "i" else (info.max + 1) / 2)
    elif x.dtype.kind != "f":
        raise AudioError(where, f"samples must be numbers, not {x.dtype}")
    if x.ndim == 2:  # (samples, channels) or (channels, samples): the longer axis is time
        x = to_mono(x if x.shape[0] >= x.shape[1] else x.T)
    if x.ndim > 2:
        raise AudioError(where, f"samples must be 1-D or 2-D (samples, channels), not shape {x.shape}")
    x = x.reshape(-1).astype(np.float32, copy=False)
    if x.size == 0 and allow_empty:
        return x
    return check_samples(x, where)


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read ``path`` and return mono float32 samples ``(T,)`` in [-1, 1] at ``sample_rate``.

    Raises :class:`AudioError` (one line, naming the file and the cause) for a missing file,
    a directory, an empty file, a file that is not audio, a truncated or corrupt file, or
    samples that are NaN/infinite.
    """

    p = Path(path)
    if not p.exists():
        raise AudioError(path, "no such file")
    if p.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    try:
        size = p.stat().st_size
    except OSError as e:  # permission and friends
        raise AudioError(path, f"cannot stat file ({e.strerror or e})") from None
    if size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        with sf.SoundFile(str(p)) as f:
            sr = f.samplerate
            declared = f.frames
            _check_header(path, sr, declared, f.channels)  # before decoding: no allocation a header can blow up
            data = f.read(dtype="float32", always_2d=True)  # (T, C)
    except PermissionError:
        raise AudioError(path, "permission denied") from None
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        msg = str(e).split("\n")[0]
        if "Format not recognised" in msg or "unknown format" in msg.lower():
            raise AudioError(path, "not an audio file (format not recognised)") from None
        raise AudioError(path, f"cannot decode audio ({_short(msg)})") from None
    # libsndfile returns what it could decode from a truncated stream; a declared length it could
    # not deliver is a damaged file, not a short recording.
    if declared > 0 and declared < (1 << 62) and data.shape[0] < declared:
        raise AudioError(path, f"truncated or corrupt: decoded {data.shape[0]} of {declared} declared samples")
    samples = check_samples(to_mono(data), path)
    return resample(samples, sr, sample_rate)


MAX_DECODED_SAMPLES = 1 << 30  # about 18.6 h of 16-kHz mono (4 GiB as float32): longer files are refused, not read


def _check_header(path, rate: int, frames: int, channels: int) -> None:
    """What a file's header declares, checked before anything is decoded (a 309-KB WAV claiming 1 Hz would be
    resampled to 16 kHz as gigabytes)."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(path, f"its header says {rate} Hz: a sample rate must be in {MIN_RATE}..{MAX_RATE}")
    if 0 < frames < (1 << 62) and frames * channels > MAX_DECODED_SAMPLES:
        raise AudioError(path, f"too long to decode at once ({frames / rate / 3600:.1f} h, {channels} channel(s)): "
                               f"cut it into files under {MAX_DECODED_SAMPLES // SAMPLE_RATE // 3600} h")


def audio_info(path: str | os.PathLike) -> tuple[int, float]:
    """``(sample_rate, duration_seconds)`` from the header, without decoding (AudioError on failure)."""

    try:
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - soundfile raises several unrelated types here
        if not Path(path).exists():
            raise AudioError(path, "no such file") from None
        raise AudioError(path, f"cannot read audio header ({_short(str(e))})") from None
    return info.samplerate, info.frames / info.samplerate if info.samplerate else math.nan


def _short(msg: str, limit: int = 120) -> str:
    msg = " ".join(msg.split())
    # soundfile prefixes "Error opening 'path': " which repeats the file name; drop it.
    if msg.startswith("Error opening") and ": " in msg:
        msg = msg.split(": ", 1)[1]
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."
