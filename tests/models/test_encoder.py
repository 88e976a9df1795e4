"""Conformer encoder: shapes, masks, and the streaming parity contract."""

from __future__ import annotations

import pytest
import torch

from asr.config import EncoderConfig
from asr.models.encoder import ConformerEncoder
from asr.nn.attention import rel_shift
from asr.nn.masks import chunk_mask


def _enc(rate=4, causal=True, layers=3, channels=0):
    torch.manual_seed(0)
    cfg = EncoderConfig(d_model=64, num_heads=4, ffn_dim=128, num_layers=layers, kernel_size=7, subsampling=rate,
                        causal_conv=causal, subsampling_channels=channels)
    return ConformerEncoder(cfg).eval()


def test_chunk_mask():
    m = chunk_mask(6, 2, left_chunks=1)
    expected = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0],
                             [0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(m, expected)
    assert torch.equal(chunk_mask(5, 2, -1)[4], torch.ones(5, dtype=torch.bool))


def test_rel_shift_indexing():
    B, H, Tq, Tk = 1, 1, 3, 5
    P = Tk + Tq - 1
    dist = torch.arange(Tk - 1, -Tq, -1).float()  # the distance each column stands for
    x = dist.view(1, 1, 1, P).expand(B, H, Tq, P)
    out = rel_shift(x, Tk)[0, 0]
    for i in range(Tq):
        for j in range(Tk):
            assert out[i, j] == (Tk - Tq + i) - j


@pytest.mark.parametrize("rate", [4, 6, 8])
def test_output_lengths(rate):
    enc = _enc(rate)
    x = torch.randn(3, 200, 80)
    lens = torch.tensor([200, 150, 31])
    y, y_lens = enc(x, lens)
    assert y.shape[:2] == (3, int(y_lens.max())) and y.shape[2] == 64
    assert y_lens.tolist() == enc.subsampling.out_length(lens).tolist()


def test_padding_does_not_change_output():
    """An utterance gives the same encoding alone and padded inside a batch (batched vs single)."""
    enc = _enc()
    x = torch.randn(2, 180, 80)
    y, lens = enc(x, torch.tensor([180, 120]))
    y1, l1 = enc(x[1:, :120], torch.tensor([120]))
    assert torch.allclose(y[1, : int(l1)], y1[0], atol=1e-5)


def test_narrow_front_end():
    """subsampling_channels narrows the conv2d front end only: same output lengths and width, fewer weights."""
    wide, narrow = _enc(), _enc(channels=16)
    assert narrow.subsampling.conv[0].out_channels == 16 and wide.subsampling.conv[0].out_channels == 64
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(narrow.subsampling) < n(wide.subsampling) / 3
    x, lens = torch.randn(2, 200, 80), torch.tensor([200, 90])
    (yw, lw), (yn, ln) = wide(x, lens), narrow(x, lens)
    assert yw.shape == yn.shape and torch.equal(lw, ln)


@pytest.mark.parametrize("rate,chunk,left,channels", [(4, 4, -1, 0), (4, 4, 2, 0), (4, 1, 3, 0), (6, 8, 1, 0),
                                                      (8, 3, -1, 0), (4, 16, 4, 0), (4, 4, 2, 16)])
def test_forward_chunk_equals_masked_forward(rate, chunk, left, channels):
    """Chunk-by-chunk forward_chunk reproduces forward() with the matching chunk mask (tolerance 1e-4)."""
    enc = _enc(rate, channels=channels)
    x = torch.randn(2, 301, 80)
    full, lens = enc(x, torch.tensor([301, 301]), chunk=chunk, left_chunks=left)
    state = enc.init_state(2)
    window, stride = enc.chunk_window(chunk)
    outs, start = [], 0
    while start + enc.subsampling.receptive_field <= x.size(1):
        y, state = enc.forward_chunk(x[:, start:start + window], state, left_frames=left * chunk if left >= 0 else -1)
        outs.append(y)
        start += stride
    streamed = torch.cat(outs, 1)
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max() < 1e-4
    assert state.offset == full.size(1)
    if left >= 0:  # memory stays bounded
        assert state.cache_frames <= left * chunk


def test_streaming_needs_causal_conv():
    enc = _enc(causal=False)
    with pytest.raises(RuntimeError, match="causal_conv"):
        enc.forward_chunk(torch.randn(1, 20, 80), enc.init_state(1))


def test_full_context_differs_from_chunked():
    """Sanity: the chunk mask really restricts attention."""
    enc = _enc()
    x = torch.randn(1, 200, 80)
    a, _ = enc(x, torch.tensor([200]))
    b, _ = enc(x, torch.tensor([200]), chunk=2, left_chunks=1)
    assert (a - b).abs().max() > 1e-3


def test_intermediate_ctc_adds_a_loss_on_a_middle_layer():
    """model.inter_ctc_layer: the shared CTC head also scores that layer's output; its gradient reaches the
    layers below it through the shorter path; off by default (the same loss as before)."""
    import dataclasses

    from asr.config import load_config
    from asr.models.asr_model import ASRModel

    cfg = load_config("tiny").model
    enc = dataclasses.replace(cfg.encoder, num_layers=3, d_model=32, ffn_dim=64, num_heads=2, dropout=0.0,
                              chunk_prob=0.0)
    base = dataclasses.replace(cfg, encoder=enc, vocab_size=20, mlm_weight=0.0, att_weight=0.0, ctc_weight=1.0)
    feats, lens = torch.randn(2, 120, 80) * 3 + 8, torch.tensor([120, 90])
    targets = [[3, 4, 5, 6], [7, 8]]
    losses = {}
    for layer in (0, 1):
        torch.manual_seed(0)
        m = ASRModel(dataclasses.replace(base, inter_ctc_layer=layer, inter_ctc_weight=0.5)).eval()
        out = m(feats, lens, targets, chunk=0)
        losses[layer] = out
        if layer:
            assert torch.isfinite(out["inter_ctc"]) and "inter_ctc" in out
            assert out["loss"].item() == pytest.approx(0.5 * out["ctc"].item() + 0.5 * out["inter_ctc"].item(), rel=1e-5)
            out["inter_ctc"].backward()
            first = m.encoder.layers[0].ff1[0].weight.grad
            last = m.encoder.layers[2].ff1[0].weight.grad
            assert first is not None and float(first.abs().sum()) > 0 and (last is None or float(last.abs().sum()) == 0)
    assert "inter_ctc" not in losses[0]
    assert losses[0]["ctc"].item() == pytest.approx(losses[1]["ctc"].item(), rel=1e-6)  # same weights, same final CTC
