"""Batches for training and validation: lhotse cuts -> padded features (the model's front end) + token ids.

Features are computed on the fly (load + fbank cost 1.2-1.5 ms per second of audio here, about a tenth of a
`tiny` training step), or read back from an on-disk :class:`FeatureCache` (``train.feature_cache``): each cut's
fbank (speed-perturbed copies are cuts of their own) is written once, atomically, as float32 ``.npy`` named by a
hash of what it was computed from. Batches come from lhotse's DynamicBucketingSampler (length-bucketed, at most
``max_duration`` seconds of audio each).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from lhotse.dataset import DynamicBucketingSampler, SimpleCutSampler

from asr.audio import AudioError
from asr.config import FrontendConfig, to_dict
from asr.errors import first_line
from asr.features import FbankConfig, features
from asr.files import atomic_path
from asr.text import normalize_text
from asr.tokenizers import load_tokenizer


def fbank_batch(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature matrices ``[(T_i, 80)]`` -> zero-padded ``(B, T, 80)`` and lengths ``(B,)``."""
    lens = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lens


@dataclass
class Batch:
    feats: torch.Tensor  # (B, T, 80) raw fbank, zero padded
    feat_lens: torch.Tensor  # (B,)
    tokens: list[list[int]]  # token ids per utterance (no sos/eos)
    texts: list[str]  # normalised transcripts
    ids: list[str]  # cut ids
    duration: float  # seconds of audio in the batch


def cut_fbank(cut, frontend: FrontendConfig | None = None) -> torch.Tensor:
    """``(T, F)`` features of one cut's audio (16 kHz; speed perturbation applied by lhotse): fbank, or the model's
    front end."""
    try:
        audio = cut.load_audio()[0]
    except Exception as e:  # noqa: BLE001 - lhotse and libsndfile raise many types: one line naming the file
        src = cut.recording.sources[0].source if cut.recording is not None and cut.recording.sources else cut.id
        raise AudioError(src, f"cannot read the audio of cut {cut.id} ({type(e).__name__}: {first_line(e)})") from None
    return features(audio, frontend)


class FeatureCache:
    """Fbank of cuts on disk: ``DIR/ab/<sha1>.npy``, the hash over the audio the cut reads (recording sources,
    start, duration, transforms such as speed perturbation; not the cut id, so a mix's repeated copies share one
    file) and the fbank settings, so other settings never read stale features. Written atomically; an unreadable file is recomputed."""

    def __init__(self, root: str | Path, frontend: FrontendConfig | None = None):
        self.root = Path(root)
        self.frontend = frontend
        self.writable = True

    def _key(self, cut) -> Path:
        rec = cut.recording
        what = {"start": round(cut.start, 4), "duration": round(cut.duration, 4),
                "sources": [s.source for s in rec.sources] if rec is not None else [],
                "transforms": rec.transforms if rec is not None and rec.transforms else [],
                "fbank": FbankConfig().__dict__}
        if self.frontend is not None and self.frontend.kind != "fbank":
            what["frontend"] = to_dict(self.frontend)
        h = hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()
        return self.root / h[:2] / f"{h}.npy"

    def fbank(self, cut) -> torch.Tensor:
        path = self._key(cut)
        try:
            return torch.from_numpy(np.load(path))
        except (OSError, ValueError):
            pass
        f = cut_fbank(cut, self.frontend)
        if self.writable:
            try:
                with atomic_path(path) as tmp:
                    with open(tmp, "wb") as fh:
                        np.save(fh, f.numpy())
            except OSError as e:  # a read-only or full disk: train on, without caching
                self.writable = False

                logging.getLogger("asr.train").warning(f"{self.root}: feature cache not writable ({e}); "
                                                       "computing features on the fly")
        return f


class CutDataset(torch.utils.data.Dataset):
    """Map-style dataset whose "index" is a lhotse CutSet (one batch), as lhotse's samplers yield.
    ``cache_dir``: read / write each cut's features there (:class:`FeatureCache`)."""

    def __init__(self, tokenizer_path: str, cache_dir: str | Path | None = None, frontend: FrontendConfig | None = None):
        self.tokenizer_path, self.frontend = tokenizer_path, frontend
        self.cache = FeatureCache(cache_dir, frontend) if cache_dir else None
        self._tok = None  # built lazily in each worker process

    def __getitem__(self, cuts) -> Batch:
        if self._tok is None:
            self._tok = load_tokenizer(self.tokenizer_path)
        feats, raw, ids = [], [], []
        for c in cuts:
            feats.append(self.cache.fbank(c) if self.cache is not None else cut_fbank(c, self.frontend))
            raw.append(" ".join(s.text for s in c.supervisions))
            ids.append(c.id)
        padded, lens = fbank_batch(feats)
        tokens = [self._tok.encode(self._tok.target_text(t)) for t in raw]  # as the model writes it (its casing)
        return Batch(padded, lens, tokens, [normalize_text(t) for t in raw], ids, float(sum(c.duration for c in cuts)))


class SkipSampler:
    """Wraps a lhotse sampler for one epoch, skipping the first ``skip`` batches (exact resume)."""

    def __init__(self, sampler, skip: int = 0):
        self.sampler, self.skip = sampler, skip

    def __iter__(self) -> Iterator:
        # lhotse samplers return themselves from iter() and restart when iter() is called again, so
        # `yield from it` would undo the skip: advance with next() only.
        it = iter(self.sampler)
        for _ in range(self.skip):
            next(it, None)
        while True:
            try:
                yield next(it)
            except StopIteration:
                return


class ShuffledBatches:
    """An epoch of a bucketing sampler's batches in a random order (seeded by ``seed`` and the epoch).

    lhotse's DynamicBucketingSampler draws a bucket uniformly among those holding a full batch, so one bucket
    outlasts the others and the epoch ends on a run of batches from it: on the 16-hour synthetic corpus the
    last ~60 of 1,751 batches were all 2-second utterances (11 a batch instead of 5-6), and the dev CER logged
    at the end of such a tail was up to 4-5 points worse than 500 steps before and after. Reading the whole
    epoch's batches first (the cuts, not their audio: a few seconds for 10k cuts) and permuting them spreads
    every bucket over the epoch, as ESPnet's iterator does with its batch list. The batches are lhotse's.
    """

    def __init__(self, sampler, seed: int):
        self.sampler, self.seed, self.epoch = sampler, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator:
        batches = list(self.sampler)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(batches))
        return (batches[i] for i in order)


def make_sampler(cuts, max_duration: float, num_buckets: int, shuffle: bool, seed: int, world_size: int = 1,
                 rank: int = 0, shuffle_batches: bool = False):
    """Batches of at most ``max_duration`` seconds: in order (``shuffle=False``), or length-bucketed and
    shuffled (lhotse's DynamicBucketingSampler), with ``shuffle_batches`` also in a random batch order
    (:class:`ShuffledBatches`)."""

    if not shuffle:
        return SimpleCutSampler(cuts, max_duration=max_duration, shuffle=False, world_size=world_size, rank=rank)
    sampler = DynamicBucketingSampler(cuts, max_duration=max_duration, num_buckets=num_buckets, shuffle=True,
                                      drop_last=False, seed=seed, world_size=world_size, rank=rank,
                                      buffer_size=20000)
    return ShuffledBatches(sampler, seed) if shuffle_batches else sampler


def make_loader(dataset: CutDataset, sampler, num_workers: int, seed: int = 0) -> torch.utils.data.DataLoader:
    # Its own generator: creating a loader must not draw from the global RNG (exact resume mid-epoch).
    return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                                       collate_fn=None, persistent_workers=False,
                                       generator=torch.Generator().manual_seed(seed),
                                       prefetch_factor=4 if num_workers > 0 else None)
