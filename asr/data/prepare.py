"""LibriSpeech-layout corpora -> lhotse manifests; training statistics (CMVN) and the tokenizer.

Works the same on a real LibriSpeech download (``LibriSpeech/train-clean-100`` ...) and on the
synthetic corpus (``train``, ``dev``, ``test``). Every step is re-runnable: outputs that exist are
read back, not rebuilt (lhotse's ``prepare_librispeech`` convention).

Outputs in ``out_dir``::
    librispeech_recordings_SUBSET.jsonl.gz, librispeech_supervisions_SUBSET.jsonl.gz   (lhotse)
    librispeech_cuts_SUBSET.jsonl.gz                                                 (one cut per utterance)
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Sequence

import numpy as np
from lhotse import CutSet, load_manifest, load_manifest_lazy
from tqdm import tqdm

from asr.errors import UserError
from asr.features import CMVNAccumulator, GlobalCMVN, fbank
from asr.files import atomic_path
from asr.text import Tokenizer, train_tokenizer

LIBRISPEECH_PARTS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100",
                     "train-clean-360", "train-other-500")
MINI_PARTS = ("dev-clean-2", "train-clean-5")
PREFIX = "librispeech"


class PrepareError(UserError, RuntimeError):
    pass


def cuts_path(manifest_dir: str | os.PathLike, subset: str) -> Path:
    return Path(manifest_dir) / f"{PREFIX}_cuts_{subset}.jsonl.gz"


def resolve_corpus_dir(corpus_dir: str | os.PathLike) -> Path:
    """Accept the folder holding the subsets, or its parent with a ``LibriSpeech/`` folder inside."""
    d = Path(corpus_dir).resolve()  # absolute: the manifests hold audio paths that work from any folder
    if not d.is_dir():
        raise PrepareError(f"{corpus_dir}: no such directory")
    if (d / "LibriSpeech").is_dir() and not find_subsets(d):
        return d / "LibriSpeech"
    return d


def find_subsets(corpus_dir: Path) -> list[str]:
    """Subset folders (``SUBSET/SPEAKER/CHAPTER/*.trans.txt``) directly under ``corpus_dir``, sorted."""
    return sorted(p.name for p in corpus_dir.iterdir()
                  if p.is_dir() and next(p.glob("*/*/*.trans.txt"), None) is not None)


def prepare_corpus(corpus_dir: str | os.PathLike, out_dir: str | os.PathLike,
                   subsets: Sequence[str] | None = None, num_jobs: int = 2) -> dict[str, Path]:
    """Write lhotse recordings, supervisions and cuts for each subset; return ``{subset: cuts path}``.

    A subset whose cuts manifest exists is skipped (re-running is a no-op).
    """
    from lhotse.recipes.librispeech import prepare_librispeech

    corpus = resolve_corpus_dir(corpus_dir)
    found = find_subsets(corpus)
    subsets = list(subsets) if subsets else found
    if not subsets:
        raise PrepareError(f"{corpus}: no subsets in LibriSpeech layout (SUBSET/SPEAKER/CHAPTER/*.trans.txt)")
    missing = [s for s in subsets if s not in found]
    if missing:
        raise PrepareError(f"{corpus}: subset(s) {missing} not found; present: {found}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {}
    todo = [s for s in subsets if not cuts_path(out, s).is_file()]
    if todo:
        # lhotse parses each SPEAKER-CHAPTER.trans.txt and reads each .flac header.
        manifests = prepare_librispeech(corpus, dataset_parts=todo, output_dir=out, num_jobs=num_jobs)
        for s in todo:
            m = manifests.get(s) or {
                "recordings": load_manifest(out / f"{PREFIX}_recordings_{s}.jsonl.gz"),
                "supervisions": load_manifest(out / f"{PREFIX}_supervisions_{s}.jsonl.gz"),
            }
            if len(m["recordings"]) == 0:
                raise PrepareError(f"{corpus / s}: no usable utterances (transcripts without audio files?)")
            cuts = CutSet.from_manifests(recordings=m["recordings"], supervisions=m["supervisions"]).sort_by_duration()
            target = cuts_path(out, s)
            with atomic_path(target) as tmp:
                cuts.to_file(tmp)
            logging.info("prepared %s: %d cuts, %.2f h", s, len(cuts), sum(c.duration for c in cuts) / 3600)
    for s in subsets:
        result[s] = cuts_path(out, s)
    return result


def download_librispeech(target_dir: str | os.PathLike, parts: Sequence[str] = ("mini_librispeech",)) -> Path:
    """Download and unpack LibriSpeech subsets from OpenSLR (needs a network); return the corpus dir.

    ``parts``: names from LIBRISPEECH_PARTS / MINI_PARTS, or ``librispeech`` (all 960 h) or
    ``mini_librispeech``. Already-downloaded parts are skipped by lhotse.
    """
    from lhotse.recipes.librispeech import download_librispeech as _download

    parts = list(parts)
    arg = parts[0] if len(parts) == 1 and parts[0] in ("librispeech", "mini_librispeech") else parts
    return Path(_download(target_dir, dataset_parts=arg))


def load_cuts(manifest_dir: str | os.PathLike, subset: str):
    p = cuts_path(manifest_dir, subset)
    if not p.is_file():
        raise PrepareError(f"{p}: no cuts manifest (run `asr data prepare` first)")
    return load_manifest_lazy(p)


def speed_perturb(cuts, factors: Sequence[float] = (0.9, 1.0, 1.1)):
    """The cuts at each speed factor (lhotse resamples on load; ids get a ``_sp0.9`` suffix)."""

    parts = [cuts if f == 1.0 else cuts.perturb_speed(f) for f in factors]
    return CutSet.mux(*parts) if len(parts) > 1 else parts[0]


def mix_subsets(manifest_dir: str | os.PathLike, out_subset: str, parts: Sequence[tuple[str, float]],
                seed: int = 0) -> dict:
    """Write ``out_subset`` as a weighted mix of other subsets: ``parts`` are ``(subset, weight)``.

    A subset is a name in ``manifest_dir`` or ``DIR:NAME`` for another manifests folder. Weight 3 puts every cut
    in three times per epoch (copies get a ``_repK`` id suffix, and ids that clash with an earlier part's a
    ``_pN`` suffix; the feature cache keys on the audio, so copies share features); weight 0.25 puts in a random quarter (seeded). Returns hours and cuts per part.
    """

    if not parts:
        raise PrepareError("mix: give at least one SUBSET=WEIGHT")
    rng = np.random.default_rng(seed)
    out_cuts, summary, seen = [], {}, set()
    for n, (name, weight) in enumerate(parts):
        if weight < 0:
            raise PrepareError(f"mix: weight of {name} must be >= 0, not {weight}")
        src_dir, sep, sub = name.rpartition(":")
        cuts = load_cuts(src_dir if sep else manifest_dir, sub).to_eager()
        whole, frac = int(weight), weight - int(weight)
        chosen = []
        for k in range(whole):
            chosen += list(cuts) if k == 0 else [c.with_id(f"{c.id}_rep{k}") for c in cuts]
        if frac > 0:
            idx = rng.permutation(len(cuts))[: int(round(frac * len(cuts)))]
            chosen += [cuts[int(i)] if whole == 0 else cuts[int(i)].with_id(f"{cuts[int(i)].id}_rep{whole}")
                       for i in sorted(idx)]
        if any(c.id in seen for c in chosen):  # two corpora that number their utterances alike (e.g. two synthetic corpora): keep ids unique
            chosen = [c.with_id(f"{c.id}_p{n}") if c.id in seen else c for c in chosen]
        seen.update(c.id for c in chosen)
        out_cuts += chosen
        summary[name] = {"weight": weight, "cuts": len(chosen), "hours": round(sum(c.duration for c in chosen) / 3600, 3)}
    if not out_cuts:
        raise PrepareError("mix: every weight is 0")
    target = cuts_path(manifest_dir, out_subset)
    with atomic_path(target) as tmp:
        CutSet.from_cuts(out_cuts).sort_by_duration().to_file(tmp)
    summary["total"] = {"cuts": len(out_cuts), "hours": round(sum(c.duration for c in out_cuts) / 3600, 3),
                        "path": str(target)}
    return summary


def cut_transcripts(cuts) -> list[str]:
    return [s.text for c in cuts for s in c.supervisions if s.text]


def compute_stats(manifest_dir: str | os.PathLike, lang_dir: str | os.PathLike, subset: str = "train",
                  vocab_size: int = 256, model_type: str = "unigram", max_cuts: int = 4000, seed: int = 0) -> dict:
    """CMVN over (a sample of up to ``max_cuts``) training cuts and a tokenizer over their transcripts.

    Writes ``lang_dir/cmvn.json`` and ``lang_dir/tokenizer.model``; existing files are kept.
    """

    lang = Path(lang_dir)
    lang.mkdir(parents=True, exist_ok=True)
    cuts = load_cuts(manifest_dir, subset)
    cmvn_file, tok_file = lang / "cmvn.json", lang / "tokenizer.model"
    if not cmvn_file.is_file():
        all_cuts = list(cuts)
        random.Random(seed).shuffle(all_cuts)
        acc = CMVNAccumulator()

        for c in tqdm(all_cuts[:max_cuts], desc="cmvn", unit="cut", dynamic_ncols=True):
            acc.add(fbank(c.load_audio()[0]))
        acc.result().save(cmvn_file)
    if not tok_file.is_file():
        train_tokenizer(cut_transcripts(cuts), lang, vocab_size=vocab_size, model_type=model_type, name="tokenizer")
    cmvn = GlobalCMVN.load(cmvn_file)
    tok = Tokenizer(tok_file)
    return {"cmvn_frames": cmvn.frames, "tokenizer": str(tok_file), "pieces": tok.num_pieces,
            "vocab_size": tok.vocab_size}
