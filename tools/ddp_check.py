"""Throughput of one training process with N threads vs DDP over N single-thread processes (gloo), on CPU.

    .venv/bin/python tools/ddp_check.py --manifests M [--lang M/lang_char] [--config tiny] [--batches 40]

Both train the same cached, length-bucketed batches (``--batches`` timed after warm-up steps); each DDP rank
takes every other batch, so both sides process the same audio with the same number of forward/backward passes
(DDP makes half as many optimizer steps on twice the batch). Prints the seconds of each side per repetition.
Measured on 2 cores (tiny, 30-s batches): one process with 2 threads 9.54 / 9.56 s, DDP 2 x 1 thread
8.57 / 8.42 s (1.13x).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load_batches(manifests: str, lang: str, n: int, max_duration: float) -> list:
    from asr.data.batching import CutDataset, make_sampler
    from asr.data.prepare import load_cuts
    cache = Path(manifests) / "feature_cache"
    ds = CutDataset(f"{lang}/tokenizer.model", str(cache) if cache.is_dir() else None)
    sampler = make_sampler(load_cuts(manifests, "train").to_eager(), max_duration, 10, True, 0, shuffle_batches=False)
    out = []
    for cuts in sampler:
        out.append(ds[cuts])
        if len(out) == n:
            break
    return out


def make_model(config: str, lang: str):
    from asr.config import load_config
    from asr.models.asr_model import ASRModel
    from asr.text import Tokenizer
    torch.manual_seed(0)
    vocab = Tokenizer(f"{lang}/tokenizer.model").vocab_size
    model = ASRModel(dataclasses.replace(load_config(config).model, vocab_size=vocab))
    model.train()
    return model


def train_steps(model, opt, batches) -> None:
    for b in batches:
        model(b.feats, b.feat_lens, b.tokens)["loss"].backward()
        opt.step()
        opt.zero_grad()


def ddp_worker(rank: int, world: int, args, batches, queue) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(args.port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model = torch.nn.parallel.DistributedDataParallel(make_model(args.config, args.lang))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    mine = batches[rank::world]
    train_steps(model, opt, mine[: args.warmup // world])
    dist.barrier()
    t0 = time.perf_counter()
    train_steps(model, opt, mine[args.warmup // world:])
    dist.barrier()
    if rank == 0:
        queue.put(time.perf_counter() - t0)
    dist.destroy_process_group()


def batch_args(p: argparse.ArgumentParser, batches: int, warmup: int) -> None:
    """The options of the tools that time training steps on a corpus's cached batches."""
    p.add_argument("--manifests", required=True)
    p.add_argument("--lang", default=None, help="tokenizer folder (default: MANIFESTS/lang_char)")
    p.add_argument("--config", default="tiny")
    p.add_argument("--batches", type=int, default=batches, help="timed batches")
    p.add_argument("--warmup", type=int, default=warmup, help="untimed batches first")
    p.add_argument("--max-duration", type=float, default=30.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    batch_args(p, batches=40, warmup=8)
    p.add_argument("--procs", type=int, default=2, help="threads of the single process = DDP processes")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--port", type=int, default=29513)
    args = p.parse_args()
    args.lang = args.lang or f"{args.manifests}/lang_char"
    batches = load_batches(args.manifests, args.lang, args.warmup + args.batches, args.max_duration)
    if len(batches) < args.warmup + args.batches:
        sys.exit(f"{args.manifests}: only {len(batches)} training batches, need {args.warmup + args.batches}")
    for rep in range(args.reps):
        torch.set_num_threads(args.procs)
        model = make_model(args.config, args.lang)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        train_steps(model, opt, batches[: args.warmup])
        t0 = time.perf_counter()
        train_steps(model, opt, batches[args.warmup:])
        single = time.perf_counter() - t0
        queue = mp.get_context("spawn").SimpleQueue()
        mp.spawn(ddp_worker, args=(args.procs, args, batches, queue), nprocs=args.procs)
        ddp = queue.get()
        print(f"rep {rep}: {args.batches} batches, one process x {args.procs} threads {single:.2f} s, "
              f"DDP {args.procs} x 1 thread {ddp:.2f} s ({single / ddp:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
