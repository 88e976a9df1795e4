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
import random
import resource
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from asr.config import Config, save_config
from asr.data.batching import Batch, CutDataset, SkipSampler, make_loader, make_sampler
from asr.data.prepare import load_cuts, speed_perturb
from asr.errors import UserError
from asr.evaluation.evaluate import ctc_greedy_texts
from asr.evaluation.metrics import cer, wer
from asr.features import GlobalCMVN
from asr.models.asr_model import ASRModel
from asr.models.ctc import TiedCTCHead
from asr.text import TokenizerProtocol
from asr.tokenizers import load_tokenizer
from asr.train.checkpoint import load_latest_checkpoint, record_score, rng_state, save_checkpoint, set_rng_state
from asr.train.ctc_vocab import ctc_vocabulary
from asr.train.experiment import ExperimentError, _check_resume, _clear_run, _earlier_run, _init_weights


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
    raise UserError(f"unknown schedule {schedule!r} (noam or cosine)")


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
    raise UserError(f"amp must be auto, none, fp16 or bf16, not {amp!r}")


def evaluate(model: ASRModel, batches, tokenizer: TokenizerProtocol, device: str) -> dict:
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


def _all_agree(flag: bool, dist_info: "Dist") -> bool:
    """True on every rank when it is true on any (DDP ranks stop together, or none does)."""
    return bool(_agreed_max(1.0 if flag else 0.0, dist_info))


def _agreed_max(value: float, dist_info: "Dist") -> float:
    """The largest ``value`` over the DDP ranks (each rank measures its own time; a schedule driven by time must
    give every rank the same learning rate, or their weights drift apart)."""
    if dist_info.world <= 1:
        return value

    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def check_train_config(tc) -> None:
    """Every check of the training section, before anything is written (one-line ValueError)."""
    checks = [
        (0.0 <= tc.vtlp < 0.5, f"train.vtlp must be in [0, 0.5), not {tc.vtlp}"),
        (tc.schedule_over in ("steps", "minutes"), f"train.schedule_over must be steps or minutes, not {tc.schedule_over!r}"),
        (tc.ema_decay == 0 or 0.0 < tc.ema_decay < 1.0, f"train.ema_decay must be in (0, 1) or 0 (off), not {tc.ema_decay}"),
        (tc.max_minutes >= 0, f"train.max_minutes must be >= 0 (0: no time limit), not {tc.max_minutes}"),
        (tc.total_steps >= 0, f"train.total_steps must be >= 0 (0: no step limit), not {tc.total_steps}"),
        (tc.epochs >= 1, f"train.epochs must be at least 1, not {tc.epochs}"),
        (tc.accum_grad >= 1, f"train.accum_grad must be at least 1, not {tc.accum_grad}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise UserError(msg)


def _tensorboard(folder: Path, step: int):
    """A TensorBoard writer, or None when tensorboard is not installed (``pip install asr[train]``): the
    curves are in train_log.jsonl either way."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log_warning("tensorboard is not installed: curves go to train_log.jsonl only (pip install 'asr[train]')")
        return None
    return SummaryWriter(str(folder), purge_step=step if step else None)


HEADS = ("ctc.", "mlm.")  # train.head_lr_scale applies to these

# what the model returns beside the loss (its loss terms and the decoder's accuracy), logged as window means
TERMS = ("ctc", "inter_ctc", "att", "r2l", "mlm", "acc")
SUMMED = ("loss", *TERMS)


class Trainer:
    """One training run, in four parts: setup (``__init__``: checks, then the experiment folder, model,
    optimizer, schedule, resume, data, logs), :meth:`step` (one micro-batch; an optimizer step every
    ``accum_grad``), :meth:`validate` and :meth:`checkpoint`; :meth:`run` loops over epochs."""

    def __init__(self, cfg: Config, manifests: Path, lang: Path, exp: Path, train_subset: str = "train",
                 valid_subset: str = "dev", resume: bool = True, device: str = "cpu", progress: bool = True,
                 curve_subset: str = "", overwrite: bool = False, init: str | None = None):
        self.exp, lang = Path(exp), Path(lang)
        self.tc = tc = cfg.train
        self.tokenizer = load_tokenizer(lang)
        self.cfg = cfg = replace(cfg, model=replace(cfg.model, vocab_size=self.tokenizer.vocab_size))
        self.curve_subset = curve_subset
        # every check before anything is written (or a process group is started)
        check_train_config(tc)
        earlier = _earlier_run(self.exp)
        if earlier and not resume and not overwrite:
            raise ExperimentError(f"{self.exp}: holds an earlier run ({', '.join(earlier[:3])}"
                                  f"{'...' if len(earlier) > 3 else ''}); resume it (without --no-resume), pass "
                                  f"--overwrite to delete it and start over, or choose another --exp")
        if earlier and resume and not overwrite:
            _check_resume(self.exp, cfg, lang)
        init_weights, self.init_dir = _init_weights(init, cfg, lang) if init else (None, None)
        self.dist = init_distributed(device)
        if device.startswith("cuda") and self.dist.world > 1:
            device = f"cuda:{self.dist.local_rank}"
            torch.cuda.set_device(device)
        self.device = device
        self._write_experiment(lang, overwrite)
        self._build_model(lang, init_weights)
        self._resume(resume and not overwrite)
        self._load_data(manifests, lang, train_subset, valid_subset, curve_subset)
        if self.step_n == 0 and "ctc.vocab" not in (init_weights or {}):
            self._ctc_vocabulary()
        self._open_logs(progress)

    # -- setup
    def _write_experiment(self, lang: Path, overwrite: bool) -> None:
        if self.dist.main:
            self.exp.mkdir(parents=True, exist_ok=True)
            if overwrite:
                _clear_run(self.exp)
            save_config(self.cfg, self.exp / "config.yaml")
            for name in ("tokenizer.model", "tokenizer.json", "tokenizer.vocab", "cmvn.json"):
                if (lang / name).is_file():
                    shutil.copyfile(lang / name, self.exp / name)
        if self.dist.world > 1:
            torch.distributed.barrier()  # the other ranks read what rank 0 cleared or wrote

    def _build_model(self, lang: Path, init_weights: dict | None) -> None:
        tc = self.tc
        torch.manual_seed(tc.seed)
        random.seed(tc.seed)
        np.random.seed(tc.seed)
        model = ASRModel(self.cfg.model, self.tokenizer.specials)
        if (lang / "cmvn.json").is_file():  # a Whisper front end has none: its features are normalised already
            model.set_cmvn(GlobalCMVN.load(lang / "cmvn.json"))
        if init_weights is not None:  # a resumed checkpoint replaces them; heads the init model lacks start fresh
            model.load_state_dict(init_weights, strict=False)
        model.freq_warp.max_warp = tc.vtlp
        self.model = model.to(self.device)
        groups: dict[tuple[bool, bool], list] = {}  # (decayed, a head) -> parameters
        for n_, p in model.named_parameters():
            if any(n_.startswith(f) for f in tc.freeze):
                p.requires_grad_(False)
                continue
            decayed = not (p.dim() < 2 or "norm" in n_ or "pos_bias" in n_)
            groups.setdefault((decayed, tc.head_lr_scale != 1.0 and n_.startswith(HEADS)), []).append(p)
        self.opt = torch.optim.AdamW([{"params": ps, "weight_decay": tc.weight_decay if decayed else 0.0,
                                       "lr": tc.lr * (tc.head_lr_scale if head else 1.0)}
                                      for (decayed, head), ps in sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1]))],
                                     lr=tc.lr, betas=(0.9, 0.98), eps=1e-9, **_fused_if_supported(self.device))
        self.clock = 0.0  # training seconds agreed by all ranks, for a schedule over minutes
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s + 1, tc.warmup_steps, tc.schedule, tc.total_steps, self._budget_share(s + 1)))
        self.ema = None  # torch's AveragedModel: ema.module holds the averaged weights (buffers too)
        if tc.ema_decay:
            self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema_decay), use_buffers=True)
        amp = _amp_dtype(tc.amp, self.device)
        self.amp = amp
        self.scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None

    def _budget_share(self, step: int) -> float | None:
        """Share of the run done, for a cosine over minutes: the larger of the time and step shares."""
        tc = self.tc
        if tc.schedule_over != "minutes" or not tc.max_minutes:
            return None
        by_steps = step / tc.total_steps if tc.total_steps else 0.0
        return max(self.clock / (tc.max_minutes * 60), by_steps)

    def _resume(self, resume: bool) -> None:
        self.step_n, self.epoch, self.batch_in_epoch, self.elapsed, self.audio_seen = 0, 0, 0, 0.0, 0.0
        latest = load_latest_checkpoint(self.exp, warn=log_warning if self.dist.main else None) if resume else None
        if latest is not None:
            st, _ = latest
            self.model.load_state_dict(st["model"])
            if self.ema is not None and "ema" in st:
                self.ema.module.load_state_dict(st["ema"])
                self.ema.n_averaged.fill_(int(st["ema_updates"]))
            self.opt.load_state_dict(st["optimizer"])
            self.sched.load_state_dict(st["scheduler"])
            self.step_n, self.epoch, self.batch_in_epoch = st["step"], st["epoch"], st["batch_in_epoch"]
            self.elapsed, self.audio_seen = st["elapsed"], st["audio_seen"]
            self.clock = self.elapsed
            set_rng_state(st["rng"])
            if self.scaler is not None and "scaler" in st:
                self.scaler.load_state_dict(st["scaler"])
        self.ddp_model = self.model
        if self.dist.world > 1:
            ids = [self.dist.local_rank] if self.device.startswith("cuda") else None
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def _load_data(self, manifests: Path, lang: Path, train_subset: str, valid_subset: str, curve_subset: str) -> None:
        tc = self.tc
        self.train_cuts = load_cuts(manifests, train_subset)
        self.short_cuts = None
        if tc.curriculum_steps:
            self.short_cuts = self.train_cuts.filter(lambda c: c.duration <= tc.curriculum_max_seconds).to_eager()
            if len(self.short_cuts) == 0:
                self.short_cuts = None
        if tc.speed_perturb:
            self.train_cuts = speed_perturb(self.train_cuts)
        cache_dir = None
        if tc.feature_cache:
            cache_dir = Path(manifests) / "feature_cache" if tc.feature_cache == "auto" else Path(tc.feature_cache)
        self.dataset = CutDataset(str(self.tokenizer.model_path), cache_dir, self.cfg.model.frontend)

        def batches(subset: str, limit: int):
            cuts = load_cuts(manifests, subset)
            cuts = cuts.subset(first=limit) if limit else cuts
            return [self.dataset[c] for c in make_sampler(cuts.to_eager(), tc.max_duration, 1, False, 0)]

        main = self.dist.main
        self.valid_batches = batches(valid_subset, tc.valid_max_cuts) if main and valid_subset else None
        self.curve_batches = batches(curve_subset, tc.valid_max_cuts) if main and curve_subset else None

    def _ctc_vocabulary(self) -> None:
        """A tied CTC head over part of the vocabulary (``model.ctc_vocab``) covers the training transcripts' tokens,
        the 256 byte tokens, then the most frequent tokens of the synthetic corpus's text (bible + fortunes)."""
        head = self.model.ctc
        if not isinstance(head, TiedCTCHead) or head.vocab.numel() == head.full_size - 1:
            return
        from asr.data.text_source import load_sentences

        try:
            corpus = load_sentences("default")
        except (OSError, ValueError):  # no text packages here: the transcripts and the byte tokens only
            corpus = []
        texts = [s.text for c in self.train_cuts.subset(first=200_000) for s in c.supervisions]
        ids = ctc_vocabulary(texts, self.tokenizer, head.vocab.numel(), corpus)
        for m in (self.model, self.ema.module if self.ema is not None else None):
            if m is not None:
                m.ctc.set_vocab(ids)
        log_warning(f"CTC head over {len(ids)} of {head.full_size} ids (transcripts: see ctc_vocabulary)")

    def _open_logs(self, progress: bool) -> None:
        self.writer = self.log_f = self.bar = None
        if self.dist.main:
            self.writer = _tensorboard(self.exp / "tensorboard", self.step_n)
            log_path = self.exp / "train_log.jsonl"
            _drop_rows_after(log_path, self.step_n)  # a resumed run logs again what followed its checkpoint
            self.log_f = open(log_path, "a", encoding="utf-8")
            if progress:
                self.bar = tqdm(total=self.tc.total_steps or None, initial=self.step_n, unit="step", dynamic_ncols=True,
                                desc="train")
        self.window = {**dict.fromkeys(SUMMED, 0.0), "n": 0, "audio": 0.0, "t": 0.0}
        self.last_valid, self.last_valid_step, self.plateau_warned = None, -1, False

    # -- records
    def log(self, rec: dict) -> None:
        if self.log_f is None:
            return
        rec = {"step": self.step_n, "epoch": self.epoch, "wall_min": round(self.elapsed / 60, 3), **rec}
        self.log_f.write(json.dumps(rec) + "\n")
        self.log_f.flush()
        for k, v in rec.items():
            if self.writer is not None and isinstance(v, (int, float)) and k not in ("step", "epoch"):
                self.writer.add_scalar(k, v, self.step_n)

    def checkpoint(self) -> None:
        if not self.dist.main:
            return
        if self.last_valid is not None and self.last_valid_step == self.step_n:
            record_score(self.exp, self.step_n, self.last_valid["valid_cer"])
        ema, scaler = self.ema, self.scaler
        save_checkpoint(self.exp, self.step_n, {
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "step": self.step_n, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "elapsed": self.elapsed,
            "audio_seen": self.audio_seen, "rng": rng_state(),
            **({"ema": ema.module.state_dict(), "ema_updates": int(ema.n_averaged)} if ema is not None else {}),
            **({"scaler": scaler.state_dict()} if scaler is not None else {})}, self.tc.keep_last, self.tc.keep_best)

    def done(self) -> bool:
        """Every rank gets the same answer: each one measures its own time, so the decision is all-reduced."""
        tc = self.tc
        mine = bool((tc.total_steps and self.step_n >= tc.total_steps)
                    or (tc.max_minutes and self.elapsed >= tc.max_minutes * 60) or self.epoch >= tc.epochs)
        return _all_agree(mine, self.dist)

    # -- validation
    def scored(self) -> ASRModel:
        """The weights a checkpoint stands for (what validation ranks and export averages): the EMA once it has
        been updated, else the raw model."""
        return self.ema.module if self.ema is not None and int(self.ema.n_averaged) else self.model

    def validate(self) -> None:
        """Dev loss / WER / CER of :meth:`scored` (the raw weights' figures as ``raw_valid_*`` beside them when
        those differ), the learning-curve subset's, logged; warn once if dev CER is still near 100% well after
        warm-up."""
        raw = evaluate(self.model, self.valid_batches, self.tokenizer, self.device)
        v = raw
        if self.scored() is not self.model:
            v = {**evaluate(self.scored(), self.valid_batches, self.tokenizer, self.device),
                 **{f"raw_{k}": raw[k] for k in ("valid_loss", "valid_wer", "valid_cer")}}
        if self.curve_batches is not None:
            c = evaluate(self.scored(), self.curve_batches, self.tokenizer, self.device)
            s = self.curve_subset
            v.update({f"{s}_wer": c["valid_wer"], f"{s}_cer": c["valid_cer"], f"{s}_loss": c["valid_loss"]})
        self.last_valid, self.last_valid_step = v, self.step_n
        self.log(v)
        tc = self.tc
        if not self.plateau_warned and self.step_n >= 2 * tc.warmup_steps and v["valid_cer"] > 0.95:
            self.plateau_warned = True
            log_warning(
                f"step {self.step_n}: dev CER {100 * v['valid_cer']:.1f}% long after warm-up ({tc.warmup_steps} "
                "steps): the model is still on the CTC blank plateau (it outputs blanks only). Try "
                "--set train.plain_steps=1000 (no SpecAugment / chunk masks at first), "
                "--set train.curriculum_steps=1000 (short utterances first), a higher train.lr or shorter "
                "train.warmup_steps, or a smaller preset; check that the transcripts match the audio.")

    # -- training
    def step(self, batch: Batch, last_micro: bool, curriculum: bool = False) -> bool:
        """Forward and backward of one micro-batch; with ``last_micro`` also the optimizer step (gradients
        clipped, skipped when not finite), the schedule and the EMA. Returns whether this step ended the
        ``curriculum`` (what is saved from then on points at a fresh epoch on all the data)."""
        tc, plain = self.tc, self.step_n < self.tc.plain_steps
        feats, lens = batch.feats.to(self.device), batch.feat_lens.to(self.device)
        self.model.spec_augment.train(tc.spec_augment and not plain)
        self.model.freq_warp.train(not plain)  # no-op while max_warp (train.vtlp) is 0
        # DDP all-reduces gradients only on the micro-batch that ends an optimizer step
        sync = self.ddp_model.no_sync() if self.dist.world > 1 and not last_micro else contextlib.nullcontext()
        with sync, torch.autocast(device_type="cuda", dtype=self.amp, enabled=self.amp is not None):
            out = self.ddp_model(feats, lens, batch.tokens, **({"chunk": 0} if plain else {}))
            loss = out["loss"] / tc.accum_grad
            (self.scaler.scale(loss) if self.scaler else loss).backward()
        for k in SUMMED:
            if k in out:
                self.window[k] += float(out[k].detach())
        self.window["n"] += 1
        self.window["audio"] += batch.duration
        self.audio_seen += batch.duration * self.dist.world  # every micro-batch's audio counts
        if not last_micro:
            return False
        return self._optimizer_step(out, curriculum)

    def _optimizer_step(self, out: dict, curriculum: bool) -> bool:
        tc, opt, scaler = self.tc, self.opt, self.scaler
        if scaler:
            scaler.unscale_(opt)
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        if torch.isfinite(gnorm):
            scaler.step(opt) if scaler else opt.step()
        if scaler:
            scaler.update()
        opt.zero_grad(set_to_none=True)
        now = time.perf_counter()
        self.elapsed += now - self.t_last
        self.window["t"] += now - self.t_last
        self.t_last = now
        if tc.schedule_over == "minutes":
            self.clock = _agreed_max(self.elapsed, self.dist)
        self.sched.step()
        self.step_n += 1
        if self.ema is not None and self.step_n > tc.warmup_steps:  # the first update copies the weights
            self.ema.update_parameters(self.model)
        self.batch_in_epoch += 1
        switched = curriculum and self.step_n >= tc.curriculum_steps
        if switched:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{float(out['loss'].detach()):.1f}", lr=f"{self.sched.get_last_lr()[0]:.2e}",
                                 ep=self.epoch)
        w = self.window
        if self.step_n % tc.log_every == 0 and w["n"]:
            self.log({"loss": w["loss"] / w["n"], **{k: w[k] / w["n"] for k in TERMS if w[k]},
                      "lr": self.sched.get_last_lr()[0], "grad_norm": float(gnorm),
                      "x_real_time": w["audio"] * self.dist.world / max(1e-9, w["t"]),
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
            self.window = {k: 0.0 if k != "n" else 0 for k in w}
        return switched

    def _after_step(self) -> None:
        """Validation and checkpoints on their schedules; their time does not count as training time."""
        tc = self.tc
        if self.valid_batches is not None and tc.valid_every and self.step_n % tc.valid_every == 0:
            self.validate()
            self.t_last = time.perf_counter()
        if tc.checkpoint_every and self.step_n % tc.checkpoint_every == 0:
            self.checkpoint()
            self.t_last = time.perf_counter()

    def _epoch(self) -> bool:
        """One epoch (or what is left of it after a resume). Returns whether training is over."""
        tc = self.tc
        # curriculum epochs (short utterances only) while step < curriculum_steps; decided by step, so a resumed
        # run rebuilds the same sampler
        curriculum = self.short_cuts is not None and self.step_n < tc.curriculum_steps
        cuts = self.short_cuts if curriculum else self.train_cuts
        buckets = min(tc.num_buckets, len(self.short_cuts)) if curriculum else tc.num_buckets
        sampler = make_sampler(cuts, tc.max_duration, buckets, True, tc.seed, self.dist.world, self.dist.rank,
                               shuffle_batches=tc.shuffle_batches)
        sampler.set_epoch(self.epoch)
        loader = make_loader(self.dataset, SkipSampler(sampler, self.batch_in_epoch * tc.accum_grad), tc.num_workers,
                             seed=tc.seed + self.epoch)
        micro = 0
        self.opt.zero_grad(set_to_none=True)  # an epoch's unfinished accumulation does not leak into the next
        for batch in loader:
            micro += 1
            last_micro = micro % tc.accum_grad == 0
            switched = self.step(batch, last_micro, curriculum)
            if not last_micro:
                continue
            self._after_step()
            if self.done():
                return True
            if switched:
                return False
        self.epoch += 1
        self.batch_in_epoch = 0
        return bool(self.done())

    def run(self) -> dict:
        """Train until the step, time or epoch budget is spent; validate and checkpoint at the end. Returns the
        run's summary (also written to ``train_summary.json``)."""
        self.t_last = time.perf_counter()
        self.model.train()
        stop = bool(self.done())
        try:
            while not stop:
                stop = self._epoch()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep what was trained, say where, stop
            if self.bar is not None:
                self.bar.close()
            self.checkpoint()
            if self.dist.main:
                log_warning(f"interrupted at step {self.step_n}: checkpoint saved in {self.exp} "
                            "(run the same command again to continue)")
            raise
        if self.bar is not None:
            self.bar.close()
        if self.valid_batches is not None and (self.last_valid is None or self.step_n % max(1, self.tc.valid_every)):
            self.validate()
        self.checkpoint()
        return self._summary()

    def _summary(self) -> dict:
        summary = {"step": self.step_n, "epoch": self.epoch, "wall_minutes": round(self.elapsed / 60, 2),
                   "audio_hours_seen": round(self.audio_seen / 3600, 3),
                   "x_real_time": round(self.audio_seen / max(1e-9, self.elapsed), 1),
                   "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                   **(self.last_valid or {}), **({"init": str(self.init_dir)} if self.init_dir else {})}
        if self.dist.world > 1:
            flat = torch.cat([p.detach().reshape(-1).double() for p in self.model.parameters()]).cpu()
            mine = torch.tensor([float(flat.sum()), float((flat * flat).sum())], dtype=torch.float64)
            gathered = [torch.zeros_like(mine) for _ in range(self.dist.world)]
            torch.distributed.all_gather(gathered, mine)
            summary["ddp_param_checksums"] = [g.tolist() for g in gathered]
        if self.dist.main:
            self.log({"summary": summary})
            (self.exp / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            self.log_f.close()
            if self.writer is not None:
                self.writer.close()
        return summary


def _drop_rows_after(log_path: Path, step: int) -> None:
    """Keep the rows of ``train_log.jsonl`` up to ``step`` (atomically); a torn last line goes too."""
    if not log_path.exists():
        return
    keep = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    tmp = log_path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(f"{x}\n" for x in keep), encoding="utf-8")
    os.replace(tmp, log_path)


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
    return Trainer(cfg, manifests, lang, exp, train_subset, valid_subset, resume, device, progress, curve_subset,
                   overwrite, init).run()
