"""The training loop: single process or torchrun DDP (gloo on CPU, nccl on GPU).

``train(config, manifests, lang, exp)`` writes into ``exp``::

    config.yaml            the full config (model vocabulary filled in)
    tokenizer.model        copied from lang/, with cmvn.json: the experiment is self-contained
    step-N.pt              checkpoints (model, optimizer, scheduler, data position, RNG), last K kept
    train_log.jsonl        one JSON line per log / validation event (step, loss, lr, WER, wall time)
    tensorboard/           the same curves for TensorBoard
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import resource
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from asr.config import Config, save_config
from asr.features import GlobalCMVN
from asr.evaluation.metrics import cer, wer
from asr.evaluation.evaluate import ctc_greedy_texts
from asr.models.asr_model import ASRModel
from asr.text import Tokenizer
from asr.train.checkpoint import (list_checkpoints, load_latest_checkpoint, record_score, rng_state, save_checkpoint,
                                  set_rng_state)
from asr.data.batching import Batch, CutDataset, SkipSampler, make_loader, make_sampler


def lr_factor(step: int, warmup: int, schedule: str, total: int, progress: float | None = None) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (1-based).

    ``progress`` (0..1, e.g. the share of a wall-time budget spent) drives the cosine instead of
    ``step / total`` when given: a run limited by minutes then ends its decay as its time ends, whatever its
    throughput turns out to be."""
    step = max(1, step)
    if step <= warmup:
        return step / max(1, warmup)
    if schedule == "noam":
        return math.sqrt(warmup / step)
    if schedule == "cosine":
        if progress is not None:
            p = min(1.0, max(0.0, progress))
        elif total <= warmup:
            return 1.0
        else:
            p = min(1.0, (step - warmup) / (total - warmup))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p))
    raise ValueError(f"unknown schedule {schedule!r} (noam or cosine)")


def _fused_if_supported(device: str) -> dict:
    """AdamW's fused kernel where this torch has one for the device: the same update in one pass over the
    parameters, 3.7% more training throughput for the tiny preset on 2 CPU cores (median of 4 paired runs)."""
    kind = torch.device(device).type
    return {"fused": True} if kind in ("cpu", "cuda") and torch.__version__ >= "2.4" else {}


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _amp_dtype(amp: str, device: str) -> torch.dtype | None:
    if amp == "none" or not device.startswith("cuda"):
        return None
    if amp == "fp16":
        return torch.float16
    if amp in ("bf16", "auto"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else (torch.float16 if amp == "auto" else None)
    raise ValueError(f"amp must be auto, none, fp16 or bf16, not {amp!r}")


def evaluate(model: ASRModel, batches, tokenizer: Tokenizer, device: str) -> dict:
    """Mean loss and CTC-greedy WER over ``batches`` (model in eval mode, full context)."""
    was_training = model.training
    model.eval()
    losses, n, refs, hyps = 0.0, 0, [], []
    with torch.no_grad():
        for b in batches:
            feats, lens = b.feats.to(device), b.feat_lens.to(device)
            out = model(feats, lens, b.tokens, chunk=0)
            losses += float(out["loss"]) * len(b.ids)
            n += len(b.ids)
            hyps += ctc_greedy_texts(model, tokenizer, feats, lens)
            refs += b.texts
    model.train(was_training)
    w, c = wer(refs, hyps), cer(refs, hyps)
    return {"valid_loss": losses / max(1, n), "valid_wer": w.rate, "valid_cer": c.rate, "valid_errors": w.errors,
            "valid_words": w.ref_len}


def log_warning(msg: str) -> None:
    logging.getLogger("asr.train").warning(msg)


class ExperimentError(ValueError):
    """An experiment folder that this run must not write into as asked. ``str(err)`` is one line."""


RUN_FILES = ("train_log.jsonl", "train_summary.json", "tensorboard", "valid_scores.json")  # with step-N.pt: one run's files


def _earlier_run(exp: Path) -> list[str]:
    """What an earlier run left in ``exp`` (checkpoints, logs), by name."""
    if not exp.is_dir():
        return []
    names = [p.name for p in list_checkpoints(exp)] + [p.name for p in sorted(exp.glob("step-*.pt.corrupt"))]
    return names + [n for n in RUN_FILES if (exp / n).exists()]


def _clear_run(exp: Path) -> None:
    for p in list(list_checkpoints(exp)) + sorted(exp.glob("step-*.pt.corrupt")):
        p.unlink()
    for n in RUN_FILES:
        if (exp / n).is_dir():
            shutil.rmtree(exp / n)
        elif (exp / n).exists():
            (exp / n).unlink()


def _check_resume(exp: Path, cfg: Config, lang: Path) -> None:
    """Refuse to continue an experiment with another model shape or tokenizer (before anything is written)."""
    from asr.config import load_config, to_dict

    if (exp / "config.yaml").is_file():
        try:
            old = load_config(exp / "config.yaml")
        except Exception as e:  # noqa: BLE001 - a damaged config cannot be compared
            raise ExperimentError(f"{exp / 'config.yaml'}: cannot be read to check the resume ({e})") from None
        a, b = to_dict(old.model), to_dict(cfg.model)
        diff = sorted(_flat_diff(a, b))
        if diff:
            raise ExperimentError(f"{exp}: its checkpoints have another model config ({', '.join(diff[:4])}"
                                  f"{'...' if len(diff) > 4 else ''}); resume with the same model, or use another --exp "
                                  f"(or --overwrite to start over)")
    for name in ("tokenizer.model", "cmvn.json"):
        if (exp / name).is_file() and (lang / name).is_file() and not _same_file(name, exp / name, lang / name):
            raise ExperimentError(f"{exp / name}: differs from {lang / name}: the experiment was trained with another "
                                  f"{name.split('.')[0]}; use its lang folder, another --exp, or --overwrite")


def _same_file(name: str, a: Path, b: Path) -> bool:
    """Equal CMVN statistics, or tokenizers that encode alike (see :meth:`Tokenizer.same_as`)."""
    if a.read_bytes() == b.read_bytes():
        return True
    return name == "tokenizer.model" and Tokenizer(a).same_as(Tokenizer(b))


def _init_weights(init: str, cfg: Config, lang: Path) -> tuple[dict, Path]:
    """The weights of model directory ``init`` (or a bundled model's name) to start a run from, checked against
    this run's model and lang folder before anything is written: same parameter names and shapes, same tokenizer
    and CMVN statistics (a tokenizer with the same size but other pieces would silently relabel every output)."""
    from asr.inference.model_dir import load_model, weight_mismatches

    try:
        loaded = load_model(init)
    except (FileNotFoundError, ValueError) as e:
        raise ExperimentError(f"--init {init}: {e}") from None
    d = loaded.path
    for name in ("tokenizer.model", "cmvn.json"):
        if (lang / name).is_file() and not _same_file(name, d / name, lang / name):
            raise ExperimentError(f"{lang / name}: differs from {d / name}: --init {init} was trained with another "
                                  f"{name.split('.')[0]}; pass --lang {d} (its own) or a model trained with this lang folder")
    weights = loaded.model.state_dict()
    bad = [k for keys in weight_mismatches(ASRModel(cfg.model).state_dict(), weights) for k in keys]
    if bad:
        raise ExperimentError(f"--init {init}: its weights do not fit this config's model ({len(bad)} parameters missing, "
                              f"extra or of another shape, e.g. {bad[0]}); train with its config ({d / 'config.yaml'})")
    return weights, d


def _flat_diff(a: dict, b: dict, prefix: str = "model") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _flat_diff(x, y, f"{prefix}.{k}")
        elif x != y:
            out.append(f"{prefix}.{k}: {x} -> {y}")
    return out


def _all_agree(flag: bool, dist_info: "Dist") -> bool:
    """True on every rank when it is true on any (DDP ranks stop together, or none does)."""
    return bool(_agreed_max(1.0 if flag else 0.0, dist_info))


def _agreed_max(value: float, dist_info: "Dist") -> float:
    """The largest ``value`` over the DDP ranks (each rank measures its own time; a schedule driven by time must
    give every rank the same learning rate, or their weights drift apart)."""
    if dist_info.world <= 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def train(cfg: Config, manifests: Path, lang: Path, exp: Path, train_subset: str = "train", valid_subset: str = "dev",
          resume: bool = True, device: str = "cpu", progress: bool = True, curve_subset: str = "",
          overwrite: bool = False, init: str | None = None) -> dict:
    """Train (or continue training) a model; returns a summary of the run.

    ``resume``: continue from the newest readable checkpoint in ``exp`` (same model config and tokenizer
    required); with ``resume=False`` an ``exp`` that holds an earlier run is refused unless ``overwrite``,
    which deletes that run's checkpoints and logs first.
    ``curve_subset``: also log CTC-greedy WER on (up to valid_max_cuts of) this subset at each validation,
    for a learning curve on held-out data; its time is not counted as training.
    ``init``: a model directory (or bundled model name) whose weights a new run starts from, with a fresh optimizer,
    schedule and clock (fine-tuning, or continuing a finished run under a new budget); a resumed run ignores it,
    its checkpoint holds the weights."""
    from asr.data.prepare import load_cuts, speed_perturb

    exp, lang = Path(exp), Path(lang)
    tc = cfg.train
    tok_src = lang / "tokenizer.model"
    tokenizer = Tokenizer(tok_src)
    cfg = replace(cfg, model=replace(cfg.model, vocab_size=tokenizer.vocab_size))
    # every check before anything is written (or a process group is started)
    earlier = _earlier_run(exp)
    if earlier and not resume and not overwrite:
        raise ExperimentError(f"{exp}: holds an earlier run ({', '.join(earlier[:3])}{'...' if len(earlier) > 3 else ''}); "
                              f"resume it (without --no-resume), pass --overwrite to delete it and start over, "
                              f"or choose another --exp")
    if earlier and resume and not overwrite:
        _check_resume(exp, cfg, lang)
    init_weights, init_dir = _init_weights(init, cfg, lang) if init else (None, None)
    dist_info = init_distributed(device)
    if device.startswith("cuda") and dist_info.world > 1:
        device = f"cuda:{dist_info.local_rank}"
        torch.cuda.set_device(device)
    if dist_info.main:
        exp.mkdir(parents=True, exist_ok=True)
        if overwrite:
            _clear_run(exp)
        save_config(cfg, exp / "config.yaml")
        for name in ("tokenizer.model", "tokenizer.vocab", "cmvn.json"):
            if (lang / name).is_file():
                shutil.copyfile(lang / name, exp / name)
    if dist_info.world > 1:
        import torch.distributed as dist

        dist.barrier()  # the other ranks read what rank 0 cleared or wrote
    torch.manual_seed(tc.seed)
    import random

    import numpy as np

    random.seed(tc.seed)
    np.random.seed(tc.seed)

    model = ASRModel(cfg.model)
    model.set_cmvn(GlobalCMVN.load(lang / "cmvn.json"))
    if init_weights is not None:  # a resumed checkpoint below replaces them
        model.load_state_dict(init_weights)
    if not 0.0 <= tc.vtlp < 0.5:
        raise ValueError(f"train.vtlp must be in [0, 0.5), not {tc.vtlp}")
    model.freq_warp.max_warp = tc.vtlp
    model.to(device)
    decay, no_decay = [], []
    for n_, p in model.named_parameters():
        (no_decay if p.dim() < 2 or "norm" in n_ or "pos_bias" in n_ else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=tc.lr, betas=(0.9, 0.98), eps=1e-9, **_fused_if_supported(device))
    if tc.schedule_over not in ("steps", "minutes"):
        raise ValueError(f"train.schedule_over must be steps or minutes, not {tc.schedule_over!r}")
    clock = {"elapsed": 0.0}  # training seconds so far (validation excluded); restored on resume

    def budget_share(step_: int) -> float | None:
        """Share of the run done, for a cosine over minutes: the larger of the time and step shares."""
        if tc.schedule_over != "minutes" or not tc.max_minutes:
            return None
        by_steps = step_ / tc.total_steps if tc.total_steps else 0.0
        return max(clock["elapsed"] / (tc.max_minutes * 60), by_steps)

    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s + 1, tc.warmup_steps, tc.schedule, tc.total_steps, budget_share(s + 1)))
    ema = None  # torch's AveragedModel: ema.module holds the averaged weights (buffers too)
    if tc.ema_decay:
        if not 0.0 < tc.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1) or 0 (off), not {tc.ema_decay}")
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema_decay), use_buffers=True)

    step, epoch, batch_in_epoch, elapsed, audio_seen = 0, 0, 0, 0.0, 0.0
    latest = load_latest_checkpoint(exp, warn=log_warning if dist_info.main else None) if resume and not overwrite else None
    st = None
    if latest is not None:
        st, _ = latest
        model.load_state_dict(st["model"])
        if ema is not None and "ema" in st:
            ema.module.load_state_dict(st["ema"])
            ema.n_averaged.fill_(int(st["ema_updates"]))
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        step, epoch, batch_in_epoch = st["step"], st["epoch"], st["batch_in_epoch"]
        elapsed, audio_seen = st["elapsed"], st["audio_seen"]
        clock["elapsed"] = elapsed
        set_rng_state(st["rng"])
    ddp_model = model
    if dist_info.world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dist_info.local_rank] if device.startswith("cuda") else None)

    train_cuts = load_cuts(manifests, train_subset)
    short_cuts = None
    if tc.curriculum_steps:
        short_cuts = train_cuts.filter(lambda c: c.duration <= tc.curriculum_max_seconds).to_eager()
        if len(short_cuts) == 0:
            short_cuts = None
    if tc.speed_perturb:
        train_cuts = speed_perturb(train_cuts)
    valid_batches = None
    cache_dir = None
    if tc.feature_cache:
        cache_dir = Path(manifests) / "feature_cache" if tc.feature_cache == "auto" else Path(tc.feature_cache)
    dataset = CutDataset(str(tok_src), cache_dir)
    if dist_info.main and valid_subset:
        vc = load_cuts(manifests, valid_subset).subset(first=tc.valid_max_cuts) if tc.valid_max_cuts else load_cuts(manifests, valid_subset)
        valid_batches = [dataset[c] for c in make_sampler(vc.to_eager(), tc.max_duration, 1, False, 0)]
    curve_batches = None
    if dist_info.main and curve_subset:
        cc = load_cuts(manifests, curve_subset).subset(first=tc.valid_max_cuts)
        curve_batches = [dataset[c] for c in make_sampler(cc.to_eager(), tc.max_duration, 1, False, 0)]

    writer = None
    log_f = None
    if dist_info.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(exp / "tensorboard"), purge_step=step if step else None)
        log_f = open(exp / "train_log.jsonl", "a", encoding="utf-8")

    def log(rec: dict) -> None:
        if log_f is None:
            return
        rec = {"step": step, "epoch": epoch, "wall_min": round(elapsed / 60, 3), **rec}
        log_f.write(json.dumps(rec) + "\n")
        log_f.flush()
        for k, v in rec.items():
            if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                writer.add_scalar(k, v, step)

    amp = _amp_dtype(tc.amp, device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    if scaler is not None and st is not None and "scaler" in st:
        scaler.load_state_dict(st["scaler"])

    def checkpoint() -> None:
        if dist_info.main:
            if last_valid is not None and last_valid_step == step:
                record_score(exp, step, last_valid["valid_cer"])
            save_checkpoint(exp, step, {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "elapsed": elapsed,
                "audio_seen": audio_seen, "rng": rng_state(),
                **({"ema": ema.module.state_dict(), "ema_updates": int(ema.n_averaged)} if ema is not None else {}),
                **({"scaler": scaler.state_dict()} if scaler is not None else {})}, tc.keep_last, tc.keep_best)

    bar = None
    if progress and dist_info.main:
        from tqdm import tqdm

        bar = tqdm(total=tc.total_steps or None, initial=step, unit="step", dynamic_ncols=True, desc="train")

    def done() -> bool:
        """Every rank gets the same answer: each one measures its own time, so the decision is all-reduced."""
        mine = bool((tc.total_steps and step >= tc.total_steps) or (tc.max_minutes and elapsed >= tc.max_minutes * 60)
                    or epoch >= tc.epochs)
        return _all_agree(mine, dist_info)

    t_last = time.perf_counter()
    # what the model returns beside the loss (its loss terms and the decoder's accuracy), logged as window means
    terms = ("ctc", "inter_ctc", "att", "r2l", "mlm", "acc")
    summed = ("loss", *terms)
    window = {**dict.fromkeys(summed, 0.0), "n": 0, "audio": 0.0, "t": 0.0}
    model.train()
    stop = bool(done())
    last_valid, last_valid_step = None, -1
    plateau_warned = False

    def scored() -> ASRModel:
        """The weights a checkpoint stands for (what validation ranks and export averages): the EMA once it has
        been updated, else the raw model."""
        return ema.module if ema is not None and int(ema.n_averaged) else model

    def validate() -> dict:
        """Dev loss / WER / CER of :func:`scored`, with the raw weights' figures as ``raw_valid_*`` beside them
        when those differ (EMA)."""
        raw = evaluate(model, valid_batches, tokenizer, device)
        if scored() is model:
            return raw
        return {**evaluate(scored(), valid_batches, tokenizer, device),
                **{f"raw_{k}": raw[k] for k in ("valid_loss", "valid_wer", "valid_cer")}}

    def validated() -> None:
        """After a validation: log it; warn once if dev CER is still near 100% well after warm-up."""
        nonlocal last_valid_step, plateau_warned
        last_valid_step = step
        log(last_valid)
        if not plateau_warned and step >= 2 * tc.warmup_steps and last_valid["valid_cer"] > 0.95:
            plateau_warned = True
            log_warning(
                f"step {step}: dev CER {100 * last_valid['valid_cer']:.1f}% long after warm-up ({tc.warmup_steps} "
                "steps): the model is still on the CTC blank plateau (it outputs blanks only). Try "
                "--set train.plain_steps=1000 (no SpecAugment / chunk masks at first), "
                "--set train.curriculum_steps=1000 (short utterances first), a higher train.lr or shorter "
                "train.warmup_steps, or a smaller preset; check that the transcripts match the audio.")

    while not stop:
        # Curriculum epochs (short utterances only) while step < curriculum_steps; decided by step, so a
        # resumed run rebuilds the same sampler.
        curriculum = short_cuts is not None and step < tc.curriculum_steps
        sampler = make_sampler(short_cuts if curriculum else train_cuts, tc.max_duration,
                               min(tc.num_buckets, len(short_cuts)) if curriculum else tc.num_buckets, True, tc.seed,
                               dist_info.world, dist_info.rank, shuffle_batches=tc.shuffle_batches)
        sampler.set_epoch(epoch)
        loader = make_loader(dataset, SkipSampler(sampler, batch_in_epoch * tc.accum_grad), tc.num_workers,
                             seed=tc.seed + epoch)
        micro = 0
        opt.zero_grad(set_to_none=True)  # an epoch's unfinished accumulation does not leak into the next
        for batch in loader:
            batch: Batch
            feats, lens = batch.feats.to(device), batch.feat_lens.to(device)
            plain = step < tc.plain_steps
            model.spec_augment.train(tc.spec_augment and not plain)
            model.freq_warp.train(not plain)  # no-op while max_warp (train.vtlp) is 0
            last_micro = (micro + 1) % tc.accum_grad == 0
            # DDP all-reduces gradients only on the micro-batch that ends an optimizer step
            sync = ddp_model.no_sync() if dist_info.world > 1 and not last_micro else contextlib.nullcontext()
            with sync, torch.autocast(device_type="cuda", dtype=amp, enabled=amp is not None):
                out = ddp_model(feats, lens, batch.tokens, **({"chunk": 0} if plain else {}))
                loss = out["loss"] / tc.accum_grad
                (scaler.scale(loss) if scaler else loss).backward()
            micro += 1
            for k in summed:
                if k in out:
                    window[k] += float(out[k].detach())
            window["n"] += 1
            window["audio"] += batch.duration
            audio_seen += batch.duration * dist_info.world  # every micro-batch's audio counts
            if not last_micro:
                continue
            if scaler:
                scaler.unscale_(opt)
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            if torch.isfinite(gnorm):
                scaler.step(opt) if scaler else opt.step()
            if scaler:
                scaler.update()
            opt.zero_grad(set_to_none=True)
            now = time.perf_counter()
            elapsed += now - t_last
            window["t"] += now - t_last
            t_last = now
            if tc.schedule_over == "minutes":
                clock["elapsed"] = _agreed_max(elapsed, dist_info)
            sched.step()
            step += 1
            if ema is not None and step > tc.warmup_steps:  # the first update copies the weights
                ema.update_parameters(model)
            batch_in_epoch += 1
            switched = curriculum and step >= tc.curriculum_steps
            if switched:  # curriculum over: what is saved from now on points at a fresh epoch on all the data
                epoch, batch_in_epoch = epoch + 1, 0
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(out['loss'].detach()):.1f}", lr=f"{sched.get_last_lr()[0]:.2e}", ep=epoch)
            if step % tc.log_every == 0 and window["n"]:
                n = window["n"]
                log({"loss": window["loss"] / n, **{k: window[k] / n for k in terms if window[k]},
                     "lr": sched.get_last_lr()[0], "grad_norm": float(gnorm),
                     "x_real_time": window["audio"] * dist_info.world / max(1e-9, window["t"]),
                     "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
                window = {k: 0.0 if k != "n" else 0 for k in window}
            if valid_batches is not None and tc.valid_every and step % tc.valid_every == 0:
                last_valid = validate()
                if curve_batches is not None:
                    c = evaluate(scored(), curve_batches, tokenizer, device)
                    last_valid.update({f"{curve_subset}_wer": c["valid_wer"], f"{curve_subset}_cer": c["valid_cer"],
                                       f"{curve_subset}_loss": c["valid_loss"]})
                validated()
                t_last = time.perf_counter()  # validation time does not count as training time
            if tc.checkpoint_every and step % tc.checkpoint_every == 0:
                checkpoint()
                t_last = time.perf_counter()
            if done():
                stop = True
                break
            if switched:
                break
        else:
            epoch += 1
            batch_in_epoch = 0
            stop = bool(done())
    if bar is not None:
        bar.close()
    if valid_batches is not None and (last_valid is None or step % max(1, tc.valid_every)):
        last_valid = validate()
        validated()
    checkpoint()
    summary = {"step": step, "epoch": epoch, "wall_minutes": round(elapsed / 60, 2),
               "audio_hours_seen": round(audio_seen / 3600, 3),
               "x_real_time": round(audio_seen / max(1e-9, elapsed), 1),
               "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
               **(last_valid or {}), **({"init": str(init_dir)} if init_dir else {})}
    if dist_info.world > 1:
        import torch.distributed as dist

        flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()]).cpu()
        mine = torch.tensor([float(flat.sum()), float((flat * flat).sum())], dtype=torch.float64)
        gathered = [torch.zeros_like(mine) for _ in range(dist_info.world)]
        dist.all_gather(gathered, mine)
        summary["ddp_param_checksums"] = [g.tolist() for g in gathered]
    if dist_info.main:
        log({"summary": summary})
        (exp / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log_f.close()
        writer.close()
    return summary
