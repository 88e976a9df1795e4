"""Time ESPnet's search and ours on the same shapes, side by side (random weights; not part of the test suite).

ESPnet pins its own torch, so it lives in a separate virtual environment:

    python3 -m venv /tmp/espnet_venv && /tmp/espnet_venv/bin/pip install espnet      # ESPnet 202511 was used
    .venv/bin/python tools/espnet_side_by_side.py --espnet-python /tmp/espnet_venv/bin/python

This script runs our toolkit in this interpreter and itself again under ``--espnet-python`` in ESPnet mode,
then prints one table. Shapes: the ``base`` preset (12 x 256 Conformer encoder with relative positions and
macaron FFNs, kernel 15; 6-layer 256-d Transformer decoder; 6-layer Mask-CTC MLM decoder; 2048 FFN units;
4 heads), 5000 tokens, 20 s of input (2000 fbank frames -> 500 encoder frames), beam 10. The AR searches run
``--steps`` output steps (ours: ``asr.evaluation.bench.forced_length_search``; ESPnet: ``minlenratio``/``maxlenratio`` so that no hypothesis
may end earlier), joint CTC weight 0.3 (ESPnet's hybrid BatchBeamSearch with ``CTCPrefixScorer``); Mask-CTC
times ``--iterations`` MLM passes over ``--steps`` masked tokens (ESPnet: the iterative loop of
``MaskCTCInference.forward`` on an all-mask input, as ours with ``forced_length_search``). Medians of ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
V, D, HEADS, FFN, ENC_LAYERS, DEC_LAYERS, FRAMES = 5000, 256, 4, 2048, 12, 6, 2000


def _median(fn, runs: int) -> float:
    """Median wall time of ``fn`` after one warm-up call. The same as ``asr.evaluation.bench._median_time``, written out
    here because ESPnet mode runs under ESPnet's interpreter, where this toolkit is not importable."""
    fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def run_espnet(a) -> dict:
    import torch
    from espnet.nets.batch_beam_search import BatchBeamSearch
    from espnet.nets.scorers.ctc import CTCPrefixScorer
    from espnet2.asr.ctc import CTC
    from espnet2.asr.decoder.mlm_decoder import MLMDecoder
    from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    enc = ConformerEncoder(input_size=80, output_size=D, attention_heads=HEADS, linear_units=FFN, num_blocks=ENC_LAYERS,
                           input_layer="conv2d", pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn",
                           activation_type="swish", macaron_style=True, use_cnn_module=True, cnn_module_kernel=15).eval()
    dec = TransformerDecoder(vocab_size=V, encoder_output_size=D, attention_heads=HEADS, linear_units=FFN,
                             num_blocks=DEC_LAYERS).eval()
    mlm = MLMDecoder(vocab_size=V, encoder_output_size=D, attention_heads=HEADS, linear_units=FFN,
                     num_blocks=DEC_LAYERS).eval()
    ctc = CTC(odim=V, encoder_output_size=D).eval()
    x = torch.randn(1, FRAMES, 80)
    out = {"toolkit": f"ESPnet (torch {torch.__version__})"}
    with torch.no_grad():
        out["encoder"] = _median(lambda: enc(x, torch.tensor([FRAMES])), a.runs)
        h = enc(x, torch.tensor([FRAMES]))[0][0]  # (T', D)
        T = h.size(0)
        sos = eos = V - 1
        for name, weights in (("attention_beam", {"decoder": 1.0}), ("joint_ctc_attention", {"decoder": 0.7, "ctc": 0.3})):
            scorers = {"decoder": dec, "ctc": CTCPrefixScorer(ctc=ctc, eos=eos)}
            bs = BatchBeamSearch(scorers=scorers, weights=weights, beam_size=a.beam, vocab_size=V, sos=sos, eos=eos,
                                 pre_beam_score_key="full").eval()
            # no hypothesis may end before `steps` tokens, none may run longer
            out[name] = _median(lambda: bs(h, maxlenratio=-a.steps, minlenratio=(a.steps - 0.5) / T), a.runs)
        mask = V  # MLMDecoder adds the mask token as id V
        y0 = torch.full((1, a.steps), mask, dtype=torch.long)
        enc_out = h.unsqueeze(0)

        def maskctc():  # MaskCTCInference.forward's iterative loop on an all-mask input
            y_in = y0.clone()
            mask_idx = torch.nonzero(y_in[0] == mask).squeeze(-1)
            K = a.iterations
            for _ in range(K - 1):
                pred, _ = mlm(enc_out, [enc_out.size(1)], y_in, [y_in.size(1)])
                pred_score, pred_id = pred[0][mask_idx].max(dim=-1)
                cand = torch.topk(pred_score, a.steps // K, -1)[1]
                y_in[0][mask_idx[cand]] = pred_id[cand]
                mask_idx = torch.nonzero(y_in[0] == mask).squeeze(-1)
            pred, _ = mlm(enc_out, [enc_out.size(1)], y_in, [y_in.size(1)])
            y_in[0][mask_idx] = pred[0][mask_idx].argmax(dim=-1)

        out["mask_ctc"] = _median(maskctc, a.runs)
    return out


def run_ours(a) -> dict:
    import torch

    sys.path.insert(0, str(REPO))
    from asr.evaluation.bench import _model, forced_length_search
    from asr.search.options import DecodeOptions

    torch.set_num_threads(a.threads)
    m, _ = _model("base", V, "cpu")
    x = torch.randn(1, FRAMES, 80)
    lens = torch.tensor([FRAMES])
    out = {"toolkit": f"asr (torch {torch.__version__})"}
    opts = DecodeOptions(beam=a.beam, timestamps=False, mask_iterations=a.iterations,
                         ctc_weight=0.3)
    with torch.inference_mode():
        out["encoder"] = _median(lambda: m.encode(x, lens), a.runs)
        enc, el = m.encode(x, lens)
        lp = m.ctc_log_probs(enc)
        for name in ("attention_beam", "joint_ctc_attention", "mask_ctc"):
            out[name] = _median(lambda: forced_length_search(m, enc, el, name, opts, a.steps, lp), a.runs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--espnet-python", help="python of a virtual environment with ESPnet installed")
    ap.add_argument("--mode", choices=["both", "ours", "espnet"], default="both")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    if a.mode == "espnet":
        print(json.dumps(run_espnet(a)))
        return
    if a.mode == "ours":
        print(json.dumps(run_ours(a)))
        return
    if not a.espnet_python:
        ap.error("--espnet-python is required (or --mode ours)")
    ours = run_ours(a)
    args = [a.espnet_python, __file__, "--mode", "espnet", "--threads", str(a.threads), "--beam", str(a.beam),
            "--steps", str(a.steps), "--iterations", str(a.iterations), "--runs", str(a.runs)]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"ESPnet run failed:\n{r.stderr[-2000:]}")
    theirs = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"base shapes, V={V}, {FRAMES // 100} s, beam {a.beam}, {a.steps} steps, Mask-CTC {a.iterations} iterations, "
          f"{a.threads} threads, median of {a.runs}")
    print(f"| stage | {ours['toolkit']} (s) | {theirs['toolkit']} (s) | speed-up |")
    print("|---|---|---|---|")
    for k in ("encoder", "attention_beam", "joint_ctc_attention", "mask_ctc"):
        print(f"| {k} | {ours[k]:.3f} | {theirs[k]:.3f} | {theirs[k] / ours[k]:.1f}x |")


if __name__ == "__main__":
    main()
