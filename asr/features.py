"""Acoustic features: kaldi-compatible log-mel fbank, global CMVN, SpecAugment, streaming fbank.

Frames follow Kaldi's ``snip_edges=True`` convention: frame ``i`` covers samples
``[i * HOP_SAMPLES, i * HOP_SAMPLES + WIN_SAMPLES)``, so a frame depends on its own window only and
:class:`StreamingFbank` can produce exactly the frames of the whole-waveform :func:`fbank`.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi
from torchaudio.compliance.kaldi import inverse_mel_scale, mel_scale

from asr.audio import FRAME_LENGTH_MS, FRAME_SHIFT_MS, HOP_SAMPLES, SAMPLE_RATE, WIN_SAMPLES, num_frames
from asr.config import FrontendConfig
from asr.errors import UserError
from asr.files import write_atomic

NUM_MEL_BINS = 80
_INT16_SCALE = 32768.0  # kaldi's fbank expects samples on the int16 scale


@dataclass(frozen=True)
class FbankConfig:
    num_mel_bins: int = NUM_MEL_BINS  # mel filters = feature dimension
    frame_length_ms: float = FRAME_LENGTH_MS  # window
    frame_shift_ms: float = FRAME_SHIFT_MS  # hop
    dither: float = 0.0  # 0 keeps features deterministic (and streaming parity exact)


def fbank(samples: np.ndarray | torch.Tensor, cfg: FbankConfig = FbankConfig()) -> torch.Tensor:
    """Mono float samples ``(T,)`` at 16 kHz in [-1, 1] -> log-mel features ``(num_frames(T), 80)`` float32."""

    x = torch.as_tensor(samples, dtype=torch.float32)
    if x.dim() != 1:
        raise UserError(f"fbank expects mono samples (T,), got shape {tuple(x.shape)}")
    if x.numel() < WIN_SAMPLES:
        return torch.zeros(0, cfg.num_mel_bins)
    return kaldi.fbank(
        (x.double() * _INT16_SCALE).unsqueeze(0),  # float64 inside: frames do not depend on batch size
        num_mel_bins=cfg.num_mel_bins,
        frame_length=cfg.frame_length_ms,
        frame_shift=cfg.frame_shift_ms,
        dither=cfg.dither,
        energy_floor=0.0,
        sample_frequency=SAMPLE_RATE,
        snip_edges=True,
    ).float()


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels per factor 6.4)."""
    f = np.asanyarray(f, dtype=np.float64)
    mel = f / (200.0 / 3)
    log_part = f >= 1000.0
    return np.where(log_part, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asanyarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), (200.0 / 3) * m)


@functools.lru_cache(maxsize=4)
def _mel_matrix(n_fft: int, n_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    """Slaney-normalised triangular mel filters ``(n_fft // 2 + 1, n_mels)``, the ones ESPnet's LogMel takes from
    librosa (``htk=False``, ``norm="slaney"``), computed the same way (float64 ramps into float32 weights)."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / SAMPLE_RATE)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, freqs)
    weights = np.zeros((n_mels, freqs.size), dtype=np.float32)
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / widths[i], ramps[i + 2] / widths[i + 1]))
    weights *= (2.0 / (edges[2: n_mels + 2] - edges[:n_mels]))[:, None]
    return torch.from_numpy(weights.T.copy())


def stft_logmel(samples: np.ndarray | torch.Tensor, cfg: FrontendConfig) -> torch.Tensor:
    """ESPnet's DefaultFrontend: mono 16 kHz samples ``(T,)`` in [-1, 1] -> ``(T // hop + 1, n_mels)``: a centred
    STFT (reflect padding, periodic Hann window of ``win_length``), the power spectrum, Slaney mel filters, the
    natural log floored at 1e-10. Too short to reflect-pad (under ``n_fft / 2`` samples): no frames."""
    x = torch.as_tensor(samples, dtype=torch.float32)
    if x.dim() != 1:
        raise UserError(f"features expect mono samples (T,), got shape {tuple(x.shape)}")
    if x.numel() <= cfg.n_fft // 2:
        return torch.zeros(0, cfg.n_mels)
    spec = torch.stft(x, cfg.n_fft, cfg.hop_length, cfg.win_length, window=torch.hann_window(cfg.win_length),
                      center=True, pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
    ri = torch.view_as_real(spec)  # (F, T, 2)
    power = (ri[..., 0] ** 2 + ri[..., 1] ** 2).transpose(0, 1)  # (T, F)
    mel = torch.matmul(power, _mel_matrix(cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax))
    return mel.clamp_min(1e-10).log()


def whisper_logmel(samples: np.ndarray | torch.Tensor, cfg: FrontendConfig) -> torch.Tensor:
    """Whisper's log-mel (openai-whisper ``log_mel_spectrogram``): mono 16 kHz samples ``(T,)`` -> ``(T // hop,
    n_mels)``: a centred STFT (n_fft 400, hop 160, periodic Hann) of the samples followed by zeros, as Whisper pads
    its input, the power spectrum, Slaney mel filters, log10 floored at 1e-10, then at (max - 8), then ``(x + 4) / 4``.
    The max is taken over the frames of the samples and the three after them that still see some (Whisper takes it
    over its padded 30-s window, whose other frames are silence and never the max)."""
    x = torch.as_tensor(samples, dtype=torch.float32)
    if x.dim() != 1:
        raise UserError(f"features expect mono samples (T,), got shape {tuple(x.shape)}")
    n = x.numel() // cfg.hop_length
    if n == 0:
        return torch.zeros(0, cfg.n_mels)
    x = torch.nn.functional.pad(x, (0, cfg.n_fft))  # zeros after the samples, so the reflection at the end is zeros
    spec = torch.stft(x, cfg.n_fft, cfg.hop_length, cfg.win_length, window=torch.hann_window(cfg.win_length),
                      center=True, pad_mode="reflect", return_complex=True)[:, : n + cfg.n_fft // (2 * cfg.hop_length) + 1]
    mel = torch.matmul(spec.abs().pow(2).transpose(0, 1), _mel_matrix(cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax))
    log = mel.clamp_min(1e-10).log10()  # (frames, n_mels)
    log = torch.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0)[:n]


# The front-end registry: ModelConfig.frontend.kind -> features of mono 16 kHz samples (T,) -> (frames, n_mels)
FRONTENDS = {
    "fbank": lambda samples, cfg: fbank(samples),
    "stft_logmel": stft_logmel,
    "whisper_logmel": whisper_logmel,
}


def features(samples: np.ndarray | torch.Tensor, frontend: FrontendConfig | None = None) -> torch.Tensor:
    """A model's features of mono 16 kHz samples ``(T,)``: ``frontend`` is its ``ModelConfig.frontend`` (None: the
    toolkit's fbank). Every path computes features here (:data:`FRONTENDS`)."""
    frontend = frontend or FrontendConfig()
    return FRONTENDS[frontend.kind](samples, frontend)


class StreamingFbank:
    """Fbank over a waveform that arrives in pieces of any size.

    Keeps the samples that do not yet complete a window; the concatenation of everything
    :meth:`accept` returns equals :func:`fbank` of the whole waveform.

    >>> sf = StreamingFbank()
    >>> feats = [sf.accept(chunk) for chunk in chunks]   # doctest: +SKIP
    """

    def __init__(self, cfg: FbankConfig = FbankConfig()):
        self.cfg = cfg
        self._buffer = np.zeros(0, dtype=np.float32)  # samples not yet consumed by a complete frame
        self.frames_emitted = 0

    def accept(self, samples: np.ndarray) -> torch.Tensor:
        """Add mono 16 kHz samples ``(n,)``; return the newly complete frames ``(F, 80)`` (F may be 0)."""
        buf = np.concatenate([self._buffer, np.asarray(samples, dtype=np.float32).reshape(-1)])
        n = num_frames(buf.size)
        if n == 0:
            self._buffer = buf
            return torch.zeros(0, self.cfg.num_mel_bins)
        feats = fbank(buf[: (n - 1) * HOP_SAMPLES + WIN_SAMPLES], self.cfg)
        self._buffer = buf[n * HOP_SAMPLES:]
        self.frames_emitted += n
        return feats

    def frames_after(self, more: int) -> int:
        """How many frames :meth:`accept` would return for ``more`` further samples."""
        return num_frames(self._buffer.size + more)

    def reset(self) -> None:
        self._buffer = np.zeros(0, dtype=np.float32)
        self.frames_emitted = 0


class StreamingLogMel:
    """Whisper's log-mel over a waveform that arrives in pieces (:func:`whisper_logmel`'s frames, centred STFT with
    the start reflected). Whisper floors each frame at (max - 8) with the max over the whole input; a stream cannot
    wait for that, so it floors each frame at (the max up to that frame - 8): the same values wherever a frame is
    louder than 80 dB below the loudest before it, that is everywhere but in near-silence before the loudest sound
    (on a real clip: mean |difference| 0.005 over all frames), and the same whatever size the pieces come in."""

    def __init__(self, cfg: FrontendConfig):
        self.cfg = cfg
        self._raw = np.zeros(0, dtype=np.float32)  # samples before the reflection at the start can be made
        self._buffer: np.ndarray | None = None  # from the first sample the next frame's window covers
        self.frames_emitted = 0
        self._max = -np.inf

    def _windows(self, n_samples: int) -> int:
        return 0 if n_samples < self.cfg.n_fft else (n_samples - self.cfg.n_fft) // self.cfg.hop_length + 1

    def frames_after(self, more: int) -> int:
        """How many frames :meth:`accept` would return for ``more`` further samples."""
        half = self.cfg.n_fft // 2
        if self._buffer is None:
            n = self._raw.size + more
            return self._windows(n + half) if n > half else 0
        return self._windows(self._buffer.size + more)

    def accept(self, samples: np.ndarray) -> torch.Tensor:
        """Add mono 16 kHz samples ``(n,)``; return the newly complete frames ``(F, n_mels)``."""
        c = self.cfg
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        half = c.n_fft // 2
        if self._buffer is None:
            self._raw = np.concatenate([self._raw, x])
            if self._raw.size <= half:
                return torch.zeros(0, c.n_mels)
            x, self._raw = np.concatenate([self._raw[1: half + 1][::-1], self._raw]), self._raw[:0]
            self._buffer = np.zeros(0, dtype=np.float32)
        buf = np.concatenate([self._buffer, x])
        n = self._windows(buf.size)
        if n == 0:
            self._buffer = buf
            return torch.zeros(0, c.n_mels)
        spec = torch.stft(torch.from_numpy(buf[: (n - 1) * c.hop_length + c.n_fft].copy()), c.n_fft, c.hop_length,
                          c.win_length, window=torch.hann_window(c.win_length), center=False, return_complex=True)
        mel = torch.matmul(spec.abs().pow(2).transpose(0, 1), _mel_matrix(c.n_fft, c.n_mels, c.fmin, c.fmax))
        log = mel.clamp_min(1e-10).log10()  # (n, n_mels)
        # each frame's floor: the loudest value up to and including that frame (not the block's: the features must
        # not depend on how the samples were cut into pieces)
        peak = torch.cummax(log.max(1).values, 0).values.clamp_min(self._max)  # (n,)
        self._max = float(peak[-1])
        self._buffer = buf[n * c.hop_length:]
        self.frames_emitted += n
        return (torch.maximum(log, (peak - 8.0).unsqueeze(1)) + 4.0) / 4.0


def streaming_features(frontend: FrontendConfig | None = None):
    """The streaming counterpart of :func:`features` for a model's front end (``accept``, ``frames_after``):
    :class:`StreamingFbank` or :class:`StreamingLogMel`; ESPnet's STFT log-mel has none (one-line error)."""
    frontend = frontend or FrontendConfig()
    if frontend.kind == "fbank":
        return StreamingFbank()
    if frontend.kind == "whisper_logmel":
        return StreamingLogMel(frontend)
    raise UserError(f"streaming computes fbank or Whisper's log-mel, not {frontend.kind}")


# ------------------------------------------------------------------------------------- CMVN


@dataclass(frozen=True)
class GlobalCMVN:
    """Per-dimension mean and standard deviation over the training set."""

    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)
    frames: int  # frames the statistics were computed on

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` -> normalised ``(..., D)``."""
        return (feats - self.mean) / self.std

    def save(self, path: str | os.PathLike) -> None:
        write_atomic(path, json.dumps({"mean": self.mean.tolist(), "std": self.std.tolist(), "frames": self.frames}) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "GlobalCMVN":
        d = json.loads(Path(path).read_text())
        return cls(torch.tensor(d["mean"], dtype=torch.float32), torch.tensor(d["std"], dtype=torch.float32),
                   int(d["frames"]))


class CMVNAccumulator:
    """Running sums for :class:`GlobalCMVN` (float64 so hours of frames do not lose precision)."""

    def __init__(self, dim: int = NUM_MEL_BINS):
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.sum_sq = torch.zeros(dim, dtype=torch.float64)
        self.frames = 0

    def add(self, feats: torch.Tensor) -> None:
        """Accumulate ``(T, D)`` features."""
        f = feats.to(torch.float64)
        self.sum += f.sum(0)
        self.sum_sq += (f * f).sum(0)
        self.frames += f.shape[0]

    def result(self, floor: float = 1e-5) -> GlobalCMVN:
        if self.frames == 0:
            raise UserError("no frames accumulated for CMVN")
        mean = self.sum / self.frames
        var = (self.sum_sq / self.frames - mean * mean).clamp_min(floor**2)
        return GlobalCMVN(mean.float(), var.sqrt().float(), self.frames)


def compute_cmvn(waveforms: Iterable[np.ndarray], cfg: FbankConfig = FbankConfig()) -> GlobalCMVN:
    """Global CMVN over the fbank of each mono 16 kHz waveform."""
    acc = CMVNAccumulator(cfg.num_mel_bins)
    for w in waveforms:
        acc.add(fbank(w, cfg))
    return acc.result()


# -------------------------------------------------------------------------------- SpecAugment


@dataclass(frozen=True)
class SpecAugmentConfig:
    num_freq_masks: int = 2  # masks over mel bins per utterance
    max_freq_width: int = 10  # widest frequency mask (bins)
    num_time_masks: int = 2  # masks over frames per utterance
    max_time_width: int = 50  # widest time mask (frames)
    max_time_ratio: float = 0.1  # and never wider than this share of the utterance


class SpecAugment(torch.nn.Module):
    """Frequency and time masking (Park et al. 2019), vectorised over the batch; a no-op in eval mode."""

    def __init__(self, cfg: SpecAugmentConfig = SpecAugmentConfig()):
        super().__init__()
        self.cfg = cfg

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x (B, T, D)`` (after CMVN, so 0 is the mean), ``x_lens (B,)`` -> masked copy ``(B, T, D)``."""
        if not self.training:
            return x
        c = self.cfg
        B, T, D = x.shape
        keep = torch.ones(B, T, D, dtype=torch.bool, device=x.device)
        rnd = lambda *s: torch.rand(*s, generator=generator, device="cpu").to(x.device)  # noqa: E731
        if c.num_freq_masks and c.max_freq_width:
            w = (rnd(B, c.num_freq_masks) * (c.max_freq_width + 1)).long()  # (B, F)
            start = (rnd(B, c.num_freq_masks) * (D - w).clamp_min(1)).long()
            d = torch.arange(D, device=x.device).view(1, 1, D)
            m = ((d >= start.unsqueeze(-1)) & (d < (start + w).unsqueeze(-1))).any(1)  # (B, D)
            keep &= ~m.unsqueeze(1)
        if c.num_time_masks and c.max_time_width:
            lens = x_lens.to(x.device).float().unsqueeze(1)  # (B, 1)
            max_w = torch.minimum(torch.full_like(lens, float(c.max_time_width)), lens * c.max_time_ratio)
            w = (rnd(B, c.num_time_masks) * (max_w + 1)).long()  # (B, M)
            start = (rnd(B, c.num_time_masks) * (lens - w).clamp_min(1)).long()
            t = torch.arange(T, device=x.device).view(1, 1, T)
            m = ((t >= start.unsqueeze(-1)) & (t < (start + w).unsqueeze(-1))).any(1)  # (B, T)
            keep &= ~m.unsqueeze(2)
        return x * keep


# -------------------------------------------------------------------------- frequency warping (VTLP)

MEL_LOW_HZ, MEL_HIGH_HZ = 20.0, SAMPLE_RATE / 2  # kaldi fbank defaults (low_freq=20, high_freq=Nyquist)


@functools.lru_cache(maxsize=4)
def _mel_bins(num_bins: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Kaldi's mel bin layout: ``(centres_hz (F,), mel_low, mel_step)`` in float64 (computed once per size)."""

    lo, hi = mel_scale(torch.tensor([MEL_LOW_HZ, MEL_HIGH_HZ], dtype=torch.float64))
    step = (hi - lo) / (num_bins + 1)
    return inverse_mel_scale(lo + step * torch.arange(1, num_bins + 1, dtype=torch.float64)), lo, step


def warp_source_bins(alpha: torch.Tensor, num_bins: int = NUM_MEL_BINS, cutoff: float = 0.8) -> torch.Tensor:
    """Fractional source mel bin for each output bin under vocal-tract-length warping by ``alpha (B,)``.

    The spectrum is stretched by ``alpha`` (formants move up for ``alpha > 1``): output frequency ``f`` reads
    the input at ``f / alpha`` up to a cutoff (``cutoff`` x Nyquist x min(1, alpha)), then a straight line that
    maps Nyquist onto itself (the upper half of Kaldi's piecewise-linear VTLN warp; no lower cutoff). Returns
    ``(B, num_bins)`` positions in ``[0, num_bins - 1]``; ``alpha == 1`` gives ``0, 1, ..., num_bins - 1``."""

    centres, lo, step = _mel_bins(num_bins)
    a = alpha.to(torch.float64).unsqueeze(1)  # (B, 1)
    f = centres.unsqueeze(0)  # (1, F) Hz
    c = cutoff * MEL_HIGH_HZ * a.clamp(max=1.0)  # (B, 1) where the straight line starts
    top = (MEL_HIGH_HZ - c / a) / (MEL_HIGH_HZ - c)  # slope above the cutoff
    src = torch.where(f <= c, f / a, c / a + (f - c) * top)  # (B, F) source frequency, Hz
    pos = (mel_scale(src) - lo) / step - 1.0
    return pos.clamp(0.0, num_bins - 1.0).float()


class FrequencyWarp(torch.nn.Module):
    """VTLP (Jaitly & Hinton 2013) on log-mel features: each utterance's spectrum stretched by a random factor
    in ``[1 - max_warp, 1 + max_warp]``, as if spoken by a longer or shorter vocal tract. Works on cached fbank
    (linear interpolation between mel bins), costs two gathers a batch; a no-op in eval mode or at 0."""

    def __init__(self, max_warp: float = 0.0):
        super().__init__()
        self.max_warp = max_warp

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Raw log-mel ``x (B, T, F)`` -> warped copy ``(B, T, F)`` (padding frames stay padding)."""
        if not self.training or self.max_warp <= 0:
            return x
        alpha = 1.0 + (torch.rand(x.size(0), generator=generator) * 2 - 1) * self.max_warp
        return warp_features(x, alpha)


def warp_features(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Log-mel ``x (B, T, F)`` warped by ``alpha (B,)`` (see :func:`warp_source_bins`) -> ``(B, T, F)``."""
    B, T, F = x.shape
    pos = warp_source_bins(alpha, F).to(x.device)  # (B, F)
    lo = pos.floor().long().clamp(max=F - 2)
    w = (pos - lo).unsqueeze(1).to(x.dtype)  # (B, 1, F)
    idx = lo.unsqueeze(1).expand(B, T, F)
    return torch.gather(x, 2, idx) * (1 - w) + torch.gather(x, 2, idx + 1) * w
