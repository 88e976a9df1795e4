"""Training-step time of eager PyTorch vs ``torch.compile`` on CPU (issue 14's throughput question).

    .venv/bin/python tools/compile_check.py --manifests M [--config tiny] [--batches 30] [--warmup 10] [--threads 2]

Both sides train copies of the same initial model (the encoder compiled on one side) on the same length-bucketed batches (features from the trainer's
cache when it exists): ``--warmup`` untimed batches first (for the compiled side this is where inductor compiles,
and the time is printed), then ``--batches`` timed one by one. Prints the compile time, the median step of each
side and their ratio, and how many graphs dynamo built (the batches differ in length).
Measured on 2 cores (torch 2.14.1, tiny, 30-s batches, 2026-11-26): eager median step 0.338 s, encoder compiled
0.372 s (0.91x); the 10 warm-up batches took 260 s compiled and dynamo built 80 graphs for 40 batches (a graph per
batch shape until its cache limit, then eager); with dynamic shapes inductor fails on the encoder's masks. Not used.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))


def timed_steps(model, opt, batches) -> list[float]:
    times = []
    for b in batches:
        t0 = time.perf_counter()
        model(b.feats, b.feat_lens, b.tokens)["loss"].backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    from ddp_check import batch_args, load_batches, make_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    batch_args(p, batches=30, warmup=10)  # compilation happens in the warm-up batches
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dynamic", action=argparse.BooleanOptionalAction, default=False,
                   help="dynamic shapes (with torch 2.14 inductor fails on the encoder's masks: 'cannot determine truth "
                   "value of Relational'); without, one graph per batch shape")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    lang = args.lang or f"{args.manifests}/lang_char"
    batches = load_batches(args.manifests, lang, args.warmup + args.batches, args.max_duration)
    warm, timed = batches[: args.warmup], batches[args.warmup:]
    eager = make_model(args.config, lang)
    compiled_src = copy.deepcopy(eager)
    opt_e = torch.optim.AdamW(eager.parameters(), lr=1e-4)
    opt_c = torch.optim.AdamW(compiled_src.parameters(), lr=1e-4)
    # the encoder (most of a step's time); SpecAugment's random masks and the loss heads stay eager: compiling the
    # whole model stops at torch.rand(..., generator=None) with a symbolic batch size (torch 2.14)
    compiled_src.encoder = torch.compile(compiled_src.encoder, dynamic=args.dynamic)
    compiled = compiled_src
    timed_steps(eager, opt_e, warm)
    t0 = time.perf_counter()
    timed_steps(compiled, opt_c, warm)
    compile_s = time.perf_counter() - t0
    te = timed_steps(eager, opt_e, timed)
    tc = timed_steps(compiled, opt_c, timed)
    from torch._dynamo.utils import counters

    me, mc = statistics.median(te), statistics.median(tc)
    print(f"{args.config}, {args.threads} threads, {len(timed)} batches of <= {args.max_duration:g} s: "
          f"eager median step {me:.3f} s, compiled {mc:.3f} s ({me / mc:.2f}x); the {len(warm)} warm-up batches "
          f"took {compile_s:.0f} s compiled; graphs built: {counters['stats'].get('unique_graphs', 0)}", flush=True)


if __name__ == "__main__":
    main()
