"""Features: fbank shape, streaming parity, CMVN, SpecAugment, VTLP frequency warping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr.audio import SAMPLE_RATE, num_frames
from asr.features import (
    CMVNAccumulator,
    FrequencyWarp,
    GlobalCMVN,
    SpecAugment,
    SpecAugmentConfig,
    StreamingFbank,
    compute_cmvn,
    fbank,
    warp_features,
    warp_source_bins,
)


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    x = env * (np.sin(2 * np.pi * 180 * t) + 0.5 * np.sin(2 * np.pi * 900 * t)) + 0.05 * rng.standard_normal(n)
    return (0.2 * x).astype(np.float32)


def test_fbank_shape_and_values():
    x = _speechlike(2.0)
    f = fbank(x)
    assert f.shape == (num_frames(x.size), 80) and f.dtype == torch.float32
    assert torch.isfinite(f).all()
    assert fbank(x[:100]).shape == (0, 80)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_fbank_equals_whole_fbank(seed):
    """Fed the same waveform in chunks of random sizes (including 0 and 1 sample), the frames are identical."""
    rng = np.random.default_rng(seed)
    x = _speechlike(3.3, seed)
    whole = fbank(x)
    sf = StreamingFbank()
    pieces, pos = [], 0
    while pos < x.size:
        n = int(rng.choice([0, 1, 7, 159, 160, 399, 400, 401, 1600, 5000]))
        pieces.append(sf.accept(x[pos:pos + n]))
        pos += n
    streamed = torch.cat(pieces)
    assert streamed.shape == whole.shape
    assert sf.frames_emitted == whole.shape[0]
    assert torch.equal(streamed, whole), float((streamed - whole).abs().max())


def test_streaming_fbank_reset():
    x = _speechlike(1.0)
    sf = StreamingFbank()
    a = sf.accept(x)
    sf.reset()
    assert torch.equal(sf.accept(x), a)


def test_cmvn_matches_numpy_and_round_trips(tmp_path):
    waves = [_speechlike(1.0 + i * 0.3, i) for i in range(4)]
    cmvn = compute_cmvn(waves)
    allf = torch.cat([fbank(w) for w in waves]).double().numpy()
    assert cmvn.frames == allf.shape[0]
    np.testing.assert_allclose(cmvn.mean.numpy(), allf.mean(0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(cmvn.std.numpy(), allf.std(0), rtol=1e-4, atol=1e-4)
    normed = cmvn(torch.from_numpy(allf).float())
    assert normed.mean(0).abs().max() < 1e-3 and (normed.std(0) - 1).abs().max() < 1e-2
    cmvn.save(tmp_path / "cmvn.json")
    back = GlobalCMVN.load(tmp_path / "cmvn.json")
    assert torch.equal(back.mean, cmvn.mean) and torch.equal(back.std, cmvn.std) and back.frames == cmvn.frames


def test_cmvn_empty_raises():
    with pytest.raises(ValueError):
        CMVNAccumulator().result()


def test_specaugment_masks_in_train_only():
    torch.manual_seed(0)
    x = torch.randn(3, 200, 80) + 5.0  # nothing is 0 before masking
    lens = torch.tensor([200, 120, 60])
    aug = SpecAugment(SpecAugmentConfig(num_freq_masks=2, max_freq_width=10, num_time_masks=2, max_time_width=50))
    g = torch.Generator().manual_seed(0)
    y = aug(x, lens, generator=g)
    assert y.shape == x.shape
    zero = y == 0
    assert zero.any()  # something was masked
    # masked regions are whole rows (time) or whole columns (frequency)
    for b in range(3):
        zf = zero[b].all(0)  # (D,) frequency bins masked over all frames
        zt = zero[b].all(1)  # (T,) frames masked over all bins
        assert torch.equal(zero[b], zf.unsqueeze(0) | zt.unsqueeze(1))
        assert int(zf.sum()) <= 20
        # time masks never exceed 10% of the utterance per mask and stay inside it
        assert int(zt.sum()) <= 2 * max(1, int(0.1 * int(lens[b])) + 1)
    aug.eval()
    assert torch.equal(aug(x, lens), x)


def _tones(freqs, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.1 * sum(np.sin(2 * np.pi * f * t) for f in freqs)).astype(np.float32)


def test_frequency_warp_matches_the_spectrum_of_scaled_frequencies():
    """Warping the fbank of tones at f by alpha gives (about) the fbank of tones at alpha * f, below the cutoff."""
    base = fbank(_tones([500, 1200, 2600])).mean(0)  # (80,)
    for alpha in (0.9, 1.1):
        want = fbank(_tones([500 * alpha, 1200 * alpha, 2600 * alpha])).mean(0)
        got = warp_features(base.view(1, 1, -1), torch.tensor([alpha]))[0, 0]
        peaks = lambda v: set(torch.topk(v, 3).indices.tolist())  # noqa: E731
        assert all(min(abs(p - q) for q in peaks(want)) <= 1 for p in peaks(got)), (alpha, peaks(got), peaks(want))
        assert (got - want).abs().mean() < 0.5 * (base - want).abs().mean()  # much nearer than the unwarped


def test_frequency_warp_identity_monotone_and_eval_noop():
    pos = warp_source_bins(torch.tensor([1.0, 0.85, 1.15]))
    assert torch.allclose(pos[0], torch.arange(80.0), atol=1e-4)
    assert (pos.diff(dim=1) >= 0).all() and pos.min() >= 0 and pos.max() <= 79
    assert (pos[:, 0] < 1).all() and (pos[:, -1] > 78).all()  # both ends stay put (Nyquist maps onto itself)
    x = torch.randn(3, 20, 80)
    assert torch.allclose(warp_features(x, torch.ones(3)), x, atol=1e-4)
    fw = FrequencyWarp(0.1)
    fw.eval()
    assert fw(x) is x
    fw.train()
    y = fw(x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.allclose(y, x)
    assert FrequencyWarp(0.0).train()(x) is x
