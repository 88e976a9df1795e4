"""Decoder speed benchmark: real-time factor of the whole decode and of the search alone, medians.

Works on a trained model directory or on a preset with random weights; with random weights the AR and
Mask-CTC searches are given a fixed output length (``output_tokens``) so their cost is meaningful.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import replace

import numpy as np
import torch

from asr.audio import SAMPLE_RATE
from asr.config import load_config
from asr.errors import UserError
from asr.features import features as model_features
from asr.inference.model_dir import DEFAULT_MODEL, load_model, quantize_model, resolve_model_path
from asr.models.asr_model import ASRModel, count_parameters
from asr.search.attention import beam_search
from asr.search.mask_ctc import refine
from asr.search.methods import METHODS, available_methods, companion_log_probs, search
from asr.search.options import DecodeOptions
from asr.search.scorers import Weighted

NEG_INF = float("-inf")


class ForcedLength:
    """A full scorer that keeps the end token out until the prefix has ``n`` tokens and then allows only it:
    exactly ``n`` steps (speed benchmarks on random weights, whose decoders end at
    random). It lives here, not in the production search."""

    full = True

    def __init__(self, n: int, vocab: int, eos: int, device):
        self.n = n
        self.no_end = torch.zeros(vocab, device=device)
        self.no_end[eos] = NEG_INF
        self.end_only = torch.full((vocab,), NEG_INF, device=device)
        self.end_only[eos] = 0.0

    def init_state(self):
        return None

    def score(self, state, prefix, cand=None):
        row = self.no_end if prefix.size(1) < self.n else self.end_only
        return row.expand(prefix.size(0), -1), None

    def select(self, state, aux, parent, col, tokens):
        return None


def forced_length_search(m, enc: torch.Tensor, enc_lens: torch.Tensor, method: str, opts: DecodeOptions, n: int,
                         lp: torch.Tensor, use_cache: bool = True):
    """``method`` with exactly ``n`` output tokens: the AR searches take ``n`` steps (:class:`ForcedLength`,
    length rules off), Mask-CTC refines ``n`` masks; the CTC searches are unchanged."""
    if method in ("attention_beam", "joint_ctc_attention"):
        ratio = (n + 0.5) / float(enc_lens.min())  # the search's own length limit lets every utterance reach n
        forced = Weighted("forced_length", 1.0, ForcedLength(n, m.decoder.out.out_features, m.eos, enc.device))
        return beam_search(m, enc, enc_lens, opts.beam, ctc_weight=opts.ctc_weight if method != "attention_beam" else 0.0,
                           max_len_ratio=ratio, use_cache=use_cache, eos_threshold=0.0, ctc_length_window=(0.0, 0.0),
                           ctc_log_probs=lp, extra_scorers=[forced])
    if method == "mask_ctc":
        B = enc.size(0)
        toks = [torch.full((n,), m.mask_id, device=enc.device) for _ in range(B)]
        confs = [torch.zeros(n, device=enc.device) for _ in range(B)]
        frames = [torch.zeros(0, dtype=torch.long, device=enc.device) for _ in range(B)]
        return refine(m, enc, enc_lens, lp, toks, confs, frames, opts.mask_threshold, opts.mask_iterations)
    return search(m, enc, enc_lens, method, opts, ctc_log_probs=lp)


def _model(model: str, vocab_size: int, device: str, quantize: str | None = None):
    try:
        path = resolve_model_path(model)
    except FileNotFoundError:
        path = None
    if path is not None:
        loaded = load_model(path, device, quantize)
        return loaded.model, f"{loaded.path.name} (trained{', ' + quantize if quantize else ''})"


    cfg = load_config(model)
    torch.manual_seed(0)
    m = ASRModel(replace(cfg.model, vocab_size=vocab_size)).to(device).eval()
    desc = f"preset {model}, random weights, vocab {vocab_size}, {count_parameters(m)['total'] / 1e6:.1f}M params"
    if quantize:
        m, desc = quantize_model(m, quantize, device), f"{desc}, {quantize}"
    return m, desc


def mask_ctc_flops(mlm, tokens: int, frames: int, iterations: int) -> float:
    """Floating-point operations Mask-CTC must do to fill ``tokens`` masks in ``iterations`` passes over ``frames``
    encoder frames: per pass and layer the projections and feed-forward over every position, self-attention
    (L x L) and cross-attention (L x T) scores and sums; the cross-attention keys/values of the memory once; the
    output projection for the positions still masked (``ceil(L / iterations)`` filled per pass). Multiply-adds
    count two."""
    L, T = tokens, frames
    D, V = mlm.embed.embedding_dim, mlm.out.out_features

    def lin(m, n):
        return 2.0 * n * m.in_features * m.out_features

    total = 0.0
    for layer in mlm.layers:
        sa, ca = layer.self_attn, layer.src_attn
        per_pass = sum(lin(x, L) for x in (sa.q, sa.k, sa.v, sa.out, ca.q, ca.out, layer.ff[0], layer.ff[3]))
        per_pass += 2 * 2.0 * L * L * D + 2 * 2.0 * L * T * D
        total += iterations * per_pass + lin(ca.k, T) + lin(ca.v, T)
    step = math.ceil(L / max(1, iterations))
    masked = sum(max(0, L - step * i) for i in range(iterations))
    return total + 2.0 * masked * D * V


def matmul_rate(m_rows: int, d_in: int, d_out: int, dtype=torch.float32, device: str = "cpu", runs: int = 20) -> float:
    """FLOP/s of this machine's matrix multiply at one shape ``(m_rows, d_in) @ (d_in, d_out)`` (median)."""
    a = torch.randn(m_rows, d_in, dtype=dtype, device=device)
    b = torch.randn(d_in, d_out, dtype=dtype, device=device)
    t = _median_time(lambda: [torch.mm(a, b) for _ in range(10)], runs) / 10
    return 2.0 * m_rows * d_in * d_out / t


def _median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_decoders(model: str = DEFAULT_MODEL, decoders: list[str] | None = None, seconds: float = 20.0, batch: int = 1,
                   beam: int = 10, output_tokens: int = 0, runs: int = 5, vocab_size: int = 5000,
                   uncached: bool = True, device: str = "cpu", mask_iterations: int = 10,
                   quantize: str | None = None) -> str:
    m, desc = _model(model, vocab_size, device, quantize)
    methods = available_methods(m) if not decoders or decoders == ["all"] else decoders
    for d in methods:
        if d not in METHODS:
            raise UserError(f"unknown decoder {d!r}")
    rng = np.random.default_rng(0)
    audio = [(rng.standard_normal(int(seconds * SAMPLE_RATE)) * 0.05).astype(np.float32) for _ in range(batch)]
    audio_seconds = seconds * batch
    opts = DecodeOptions(beam=beam, timestamps=False, mask_iterations=mask_iterations)

    def run(d: str, use_cache: bool = True):
        if output_tokens:
            return forced_length_search(m, enc, enc_lens, d, opts, output_tokens, lp, use_cache)
        if not use_cache:
            return beam_search(m, enc, enc_lens, beam, use_cache=False, ctc_log_probs=lp)
        # a companion CTC (Whisper's joint decoding) is timed inside the search: its encoder runs for that method only
        return search(m, enc, enc_lens, d, opts, ctc_log_probs=lp, companion=companion_log_probs(m, d, feats, lens))

    def features():
        f = [model_features(a, m.cfg.frontend) for a in audio]
        return torch.stack(f).to(device), torch.tensor([x.shape[0] for x in f], device=device)

    feats, lens = features()
    with torch.inference_mode():
        t_feat = _median_time(features, runs)
        t_enc = _median_time(lambda: m.encode(feats, lens), runs)
        enc, enc_lens = m.encode(feats, lens)
        lp = m.ctc_log_probs(enc)
        rows = [("features (fbank)", t_feat, None), ("encoder", t_enc, None)]
        for d in methods:
            t = _median_time(lambda: run(d), runs)
            rows.append((d, t, t_feat + t_enc + t))
        if output_tokens and "mask_ctc" in methods and getattr(m, "mlm", None) is not None:
            # the floor: the FLOPs 10 passes must do, at the matmul rate of the MLM's feed-forward shape here
            dtype = next(m.mlm.parameters()).dtype
            ff = m.mlm.layers[0].ff[0]
            rate = matmul_rate(output_tokens * batch, ff.in_features, ff.out_features, dtype, device)
            flops = batch * mask_ctc_flops(m.mlm, output_tokens, int(enc.size(1)), mask_iterations)
            rows.append((f"mask_ctc FLOP limit ({flops / 1e9:.1f} GFLOP at {rate / 1e9:.0f} GFLOP/s)", flops / rate, None))
        if uncached and "attention_beam" in methods:
            t = _median_time(lambda: run("attention_beam", use_cache=False), runs)
            rows.append(("attention_beam (no KV cache)", t, t_feat + t_enc + t))
    lines = [f"model: {desc}; {batch} x {seconds:g} s; beam {beam}; output tokens "
             f"{output_tokens or 'natural'}; Mask-CTC {mask_iterations} iterations; {torch.get_num_threads()} threads; "
             f"median of {runs} runs",
             "", "| stage / decoder | search s | search RTF | whole decode RTF |", "|---|---|---|---|"]
    for name, t, whole in rows:
        lines.append(f"| {name} | {t:.4f} | {t / audio_seconds:.4f} | {'' if whole is None else f'{whole / audio_seconds:.4f}'} |")
    return "\n".join(lines)


__all__ = ["bench_decoders", "forced_length_search", "ForcedLength", "mask_ctc_flops", "matmul_rate"]

