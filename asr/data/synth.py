"""Synthetic speech corpus in LibriSpeech's layout, from the TTS voices installed here.

Layout written under ``out_dir`` (the same as an unpacked LibriSpeech, so the same recipe reads both)::
    SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac
    SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt     "SPEAKER-CHAPTER-UTT TEXT IN UPPER CASE"
    SPEAKERS.TXT                                         speaker id | subset | voice | rate | pitch
    synth.json                                           the options and the measured totals

A speaker is one voice with its settings (rate and pitch factors). Subsets are ``train``, ``dev`` and
``test``; dev and test voices never appear in train (nor in each other), and every sentence is used
once, so no sentence repeats across subsets. Everything random derives from ``seed``: the same seed,
voices and text give the same corpus.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
from scipy.signal import lfilter
from tqdm import tqdm

from asr.audio import SAMPLE_RATE
from asr.data.text_source import load_sentences
from asr.data.tts import (
    ENGINE_PACKAGES,
    NEURAL_ENGINES,
    SynthesisError,
    Voice,
    installed_voices,
    synthesize,
    voice_available,
)
from asr.errors import UserError
from asr.files import atomic_path, write_atomic
from asr.text import normalize_text

SUBSETS = ("train", "dev", "test")
WORDS_PER_SECOND = 3.1  # planning estimate for a voice at rate 1.0; totals are measured afterwards
FESTIVAL_BATCH = 24  # utterances per festival process (its start-up costs ~0.3-1 s)


@dataclass(frozen=True)
class SynthConfig:
    out_dir: Path  # corpus root
    hours: float = 1.0  # total planned audio over all subsets
    seed: int = 0
    text: str = "default"  # default | bible | fortunes | path to a text file
    voices: tuple[Voice, ...] = ()  # empty: every installed voice
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # share of hours for train, dev, test
    held_out_voices: tuple[int, int] = (3, 5)  # voices reserved for dev and for test
    speakers_per_voice: int = 2  # distinct (rate, pitch) settings per voice
    # Speaking-rate factors around each engine's default (about 3.3 words/s at 1.0). 0.72-0.95 reads at
    # about LibriSpeech's 2.7 words/s; the first corpora used 0.85-1.2 (median 3.3 words/s), which left a
    # character CTC with 4x subsampling a label on 71% of its frames and slowed training badly.
    rate_range: tuple[float, float] = (0.72, 0.95)
    augment: float = 0.3  # probability that a train utterance gets sox/noise augmentation
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    subsets: tuple[str, ...] = ()  # render only these subsets (empty: all); the plan, hence each subset, is unchanged
    hold_out: tuple[str, ...] = ()  # corpora whose dev and test sentences this one leaves out of its text


@dataclass(frozen=True)
class Utterance:
    utt_id: str  # SPEAKER-CHAPTER-UTT
    text: str  # normalised transcript
    path: Path  # .flac
    augment: tuple[str, ...]  # sox effects (may be empty)
    snr_db: float | None  # added white/pink noise, or None
    gain: float  # peak level after normalisation


@dataclass(frozen=True)
class Speaker:
    speaker_id: int
    chapter_id: int
    subset: str
    voice: Voice
    rate: float
    pitch: float


@dataclass(frozen=True)
class Task:
    speaker: Speaker
    utterances: tuple[Utterance, ...]


class CorpusError(UserError, RuntimeError):
    pass


# --------------------------------------------------------------------------------- planning


def assign_voices(voices: Sequence[Voice], held_out: tuple[int, int], rng: np.random.Generator) -> dict[str, list[Voice]]:
    """Split voices into disjoint train/dev/test groups; held-out voices are spread over engines."""
    n_dev, n_test = held_out
    if n_dev == 0 and n_test == 0:  # a training-only corpus (e.g. one neural voice): every voice in train
        return {"train": sorted(voices, key=lambda v: v.key), "dev": [], "test": []}
    if len(voices) < 3:
        raise CorpusError(f"need at least 3 TTS voices for disjoint train/dev/test speakers, found {len(voices)}")
    # Keep at least 60% of voices for training when few are installed.
    budget = max(2, int(len(voices) * 0.4))
    n_test = max(1, min(n_test, budget - 1))
    n_dev = max(1, min(n_dev, budget - n_test))
    by_engine: dict[str, list[Voice]] = {}
    for v in voices:
        by_engine.setdefault(v.engine, []).append(v)
    for vs in by_engine.values():
        rng.shuffle(vs)
    engines = sorted(by_engine)
    rng.shuffle(engines)
    # Round-robin over engines so test and dev hear several engines; never take an engine's last voice
    # while another engine has spares, so every engine keeps a voice in training.
    order: list[Voice] = []
    while any(by_engine.values()):
        for e in engines:
            if len(by_engine[e]) > 1 or (by_engine[e] and all(len(by_engine[x]) <= 1 for x in engines)):
                order.append(by_engine[e].pop())
    test, dev, train = order[:n_test], order[n_test:n_test + n_dev], order[n_test + n_dev:]
    return {"train": sorted(train, key=lambda v: v.key), "dev": sorted(dev, key=lambda v: v.key),
            "test": sorted(test, key=lambda v: v.key)}


def _sox_augment(rng: np.random.Generator) -> tuple[tuple[str, ...], float | None]:
    effects: list[str] = []
    choice = rng.random(4)
    if choice[0] < 0.4:
        effects += ["reverb", str(int(rng.integers(15, 60))), "50", str(int(rng.integers(30, 100)))]
    if choice[1] < 0.3:
        effects += ["sinc", "300-3400"]  # telephone band
    if choice[2] < 0.3:
        effects += ["speed", f"{rng.uniform(0.9, 1.1):.3f}"]
    snr = float(rng.uniform(8, 30)) if choice[3] < 0.5 else None
    if not effects and snr is None:
        snr = float(rng.uniform(15, 30))
    return tuple(effects), snr


def plan(cfg: SynthConfig, voices: Sequence[Voice], sentences: list[str]) -> list[Task]:
    """Decide speakers, sentences and augmentation for every utterance (no audio yet)."""
    rng = np.random.default_rng(cfg.seed)
    groups = assign_voices(list(voices), cfg.held_out_voices, rng)
    order = rng.permutation(len(sentences))
    next_sentence = 0
    tasks: list[Task] = []
    speaker_id = 100
    for subset, share in zip(SUBSETS, cfg.split):
        target = cfg.hours * 3600.0 * share
        if target <= 0 or not groups[subset]:
            continue
        speakers = []
        for _ in range(cfg.speakers_per_voice):  # every voice's first speaker before any voice's second
            for v in groups[subset]:
                speakers.append(Speaker(speaker_id, 1000 + speaker_id * 7 % 9000, subset, v,
                                        rate=round(float(rng.uniform(*cfg.rate_range)), 3),
                                        pitch=round(float(rng.uniform(0.85, 1.15)), 3)))
                speaker_id += 1
        # sentences go to the speakers in turn until the subset's planned length reaches its target (the last one
        # only when it brings the total closer), so a small corpus is as long as asked, not one sentence per
        # speaker over it
        utts: dict[int, list[Utterance]] = {spk.speaker_id: [] for spk in speakers}
        planned, turn = 0.0, 0
        while planned < target:
            spk = speakers[turn % len(speakers)]
            turn += 1
            if next_sentence >= len(sentences):
                raise CorpusError(f"the text has only {len(sentences)} usable sentences; ask for fewer "
                                  f"hours or give more text with --text")
            text = sentences[order[next_sentence]]
            next_sentence += 1
            seconds = len(text.split()) / (WORDS_PER_SECOND * spk.rate)
            if planned and planned + seconds - target > target - planned:
                break
            planned += seconds
            mine = utts[spk.speaker_id]
            uid = f"{spk.speaker_id}-{spk.chapter_id}-{len(mine):04d}"
            aug, snr = ((), None)
            if subset == "train" and rng.random() < cfg.augment:
                aug, snr = _sox_augment(rng)
            path = cfg.out_dir / subset / str(spk.speaker_id) / str(spk.chapter_id) / f"{uid}.flac"
            mine.append(Utterance(uid, text, path, aug, snr, round(float(rng.uniform(0.3, 0.9)), 3)))
        for spk in speakers:
            mine = utts[spk.speaker_id]
            batch = FESTIVAL_BATCH if spk.voice.engine == "festival" else 12
            for i in range(0, len(mine), batch):
                tasks.append(Task(spk, tuple(mine[i:i + batch])))
    return tasks


# --------------------------------------------------------------------------------- rendering


def _to_16k(wav: Path, effects: Sequence[str], rate_tempo: float | None, pitch: float | None = None) -> np.ndarray:
    """Any TTS WAV -> float32 mono 16 kHz samples through sox (with effects; ``pitch``: a factor applied with
    sox ``pitch``, for engines without a pitch control of their own)."""
    cmd = ["sox", "-q", str(wav), "-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(SAMPLE_RATE), "-"]
    if rate_tempo is not None and abs(rate_tempo - 1.0) > 1e-3:
        cmd += ["tempo", "-s", f"{rate_tempo:.3f}"]
    if pitch is not None and abs(pitch - 1.0) > 1e-3:
        cmd += ["pitch", f"{1200 * math.log2(pitch):.0f}"]
    cmd += list(effects)
    r = subprocess.run(cmd, capture_output=True, timeout=120)
    if r.returncode != 0:
        raise SynthesisError(f"sox: {r.stderr.decode(errors='replace').strip()[:200]}")
    return np.frombuffer(r.stdout, dtype=np.float32).copy()


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n).astype(np.float32)
    if rng.random() < 0.5:
        return white
    # pink-ish: first-order low-pass of white noise
    return lfilter([1.0], [1.0, -0.95], white).astype(np.float32)


def render(task: Task, seed: int) -> list[tuple[str, float, str | None]]:
    """Synthesize one task; return ``(utt_id, seconds, error)`` per utterance. Runs in a worker."""

    spk = task.speaker
    out: list[tuple[str, float, str | None]] = []
    with tempfile.TemporaryDirectory(prefix="asr-synth-") as tmp:
        items = [(u.text.lower().capitalize() + ".", Path(tmp) / f"{u.utt_id}.wav") for u in task.utterances]
        try:
            synthesize(spk.voice, items, rate=spk.rate, pitch=spk.pitch, workdir=Path(tmp))
            batch_error = None
        except SynthesisError as e:
            batch_error = str(e)
        for u, (_, wav) in zip(task.utterances, items):
            if batch_error and not wav.exists():
                out.append((u.utt_id, 0.0, batch_error))
                continue
            try:
                x = _to_16k(wav, u.augment, spk.rate if spk.voice.engine == "pico" else None,
                            spk.pitch if spk.voice.engine in NEURAL_ENGINES else None)
                if x.size < SAMPLE_RATE // 4:
                    raise SynthesisError(f"only {x.size} samples")
                rng = np.random.default_rng([seed, spk.speaker_id, int(u.utt_id.rsplit("-", 1)[1])])
                if u.snr_db is not None:
                    noise = _noise(x.size, rng)
                    p_sig = float(np.mean(x**2)) + 1e-10
                    p_noise = float(np.mean(noise**2)) + 1e-10
                    x = x + noise * math.sqrt(p_sig / (p_noise * 10 ** (u.snr_db / 10)))
                x = x * (u.gain / (float(np.abs(x).max()) + 1e-9))
                with atomic_path(u.path) as tmp_out:
                    sf.write(str(tmp_out), x, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
                out.append((u.utt_id, x.size / SAMPLE_RATE, None))
            except (SynthesisError, subprocess.TimeoutExpired, OSError) as e:
                out.append((u.utt_id, 0.0, str(e)))
    return out


def _write_transcripts(tasks: Sequence[Task], ok: set[str]) -> None:
    chapters: dict[Path, list[str]] = {}
    for t in tasks:
        for u in t.utterances:
            if u.utt_id in ok:
                chapters.setdefault(u.path.parent, []).append(f"{u.utt_id} {u.text}")
    for chap_dir, lines in chapters.items():
        spk, chap = chap_dir.parent.name, chap_dir.name
        f = chap_dir / f"{spk}-{chap}.trans.txt"
        write_atomic(f, "\n".join(sorted(lines)) + "\n")


_PLAN_KEYS = ("hours", "seed", "text", "split", "held_out_voices", "speakers_per_voice", "augment", "rate_range",
              "hold_out")


def held_out_sentences(corpus: str | Path) -> set[str]:
    """The normalised sentences of ``corpus``'s dev and test subsets (its ``SUBSET/SPK/CHAPTER/*.trans.txt``)."""
    files = sorted(f for subset in ("dev", "test") for f in (Path(corpus) / subset).glob("*/*/*.trans.txt"))
    if not files:
        raise CorpusError(f"{corpus}: no dev or test transcripts to hold out (SUBSET/SPEAKER/CHAPTER/*.trans.txt)")
    held = set()
    for f in files:
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            text = line.partition(" ")[2]
            if text.strip():
                held.add(normalize_text(text))
    return held


def corpus_sentences(cfg: SynthConfig) -> list[str]:
    """The sentences ``cfg`` plans from: its text, less the dev and test sentences of every ``hold_out`` corpus
    (so a train-only corpus added to a mix holds no sentence the mix's tests score)."""
    held = set().union(*(held_out_sentences(c) for c in cfg.hold_out))
    return [s for s in load_sentences(cfg.text) if s not in held]


def _config_record(cfg: SynthConfig) -> dict:
    """The options as ``synth.json`` records them (JSON types; voices are listed separately)."""
    return json.loads(json.dumps({k: v for k, v in asdict(cfg).items() if k != "voices"}, default=str))


def _check_same_plan(cfg: SynthConfig) -> None:
    """Refuse to add to a corpus folder written with other plan options: re-running skips files that
    exist, so the folder would mix two corpora under the same utterance ids."""
    meta = cfg.out_dir / "synth.json"
    if not meta.exists():
        return
    try:
        old = json.loads(meta.read_text(encoding="utf-8"))["config"]
    except (ValueError, KeyError) as e:
        raise CorpusError(f"{meta}: unreadable ({e}); remove the folder or choose another --out") from e
    new = _config_record(cfg)
    old.setdefault("rate_range", [0.85, 1.2])  # corpora written before the option existed
    old.setdefault("hold_out", [])
    diff = [k for k in _PLAN_KEYS if old.get(k) != new.get(k)]
    if diff:
        raise CorpusError(f"{cfg.out_dir} holds a corpus made with other options ({', '.join(diff)}); "
                          f"remove it or choose another --out")


def synth_corpus(cfg: SynthConfig, progress: bool = True) -> dict:
    """Write the corpus; return a summary dict (also saved as ``synth.json``). Re-runnable: an
    utterance whose .flac already exists is not synthesized again."""
    voices = list(cfg.voices) or installed_voices()
    if not voices:
        need = "; ".join(f"{e}: {'' if p.startswith('pip') else 'apt-get install '}{p}" for e, p in ENGINE_PACKAGES.items())
        raise CorpusError(f"no text-to-speech engine is installed. Install at least one ({need}), "
                          f"or run tools/setup.sh")
    for v in voices:
        if not voice_available(v):
            raise CorpusError(f"voice {v.key}: its engine is not installed ({ENGINE_PACKAGES.get(v.engine, v.engine)})")
    lo, hi = cfg.rate_range
    if not 0.3 <= lo <= hi <= 3.0:
        raise CorpusError(f"rate range {lo}-{hi}: need 0.3 <= min <= max <= 3.0")
    _check_same_plan(cfg)
    planned = plan(cfg, voices, corpus_sentences(cfg))
    in_run = lambda t: not cfg.subsets or t.speaker.subset in cfg.subsets  # noqa: E731
    tasks = [t for t in planned if in_run(t)]
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    is_done = [all(u.path.exists() for u in t.utterances) for t in tasks]
    todo = [t for t, d in zip(tasks, is_done) if not d]
    done_before = {u.utt_id for t, d in zip(tasks, is_done) if d for u in t.utterances}

    t0 = time.perf_counter()
    results: list[tuple[str, float, str | None]] = []
    bar = None
    if progress:
        bar = tqdm(total=sum(len(t.utterances) for t in todo), unit="utt", desc="synth", dynamic_ncols=True)
    if todo:
        with ProcessPoolExecutor(max_workers=max(1, cfg.jobs)) as pool:
            futures = [pool.submit(render, t, cfg.seed) for t in todo]
            audio = 0.0
            for fut in as_completed(futures):
                r = fut.result()
                results += r
                audio += sum(s for _, s, _ in r)
                if bar is not None:
                    bar.update(len(r))
                    bar.set_postfix(audio_h=f"{audio / 3600:.2f}", x_rt=f"{audio / max(1e-6, time.perf_counter() - t0):.0f}")
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t0
    failed = [(u, e) for u, _, e in results if e]
    ok = done_before | {u for u, _, e in results if not e}
    _write_transcripts(tasks, ok)

    # Totals from the files themselves, so a resumed run reports the whole corpus.

    # Over the whole plan: subsets rendered by an earlier run (another --subset) keep their totals.
    totals: dict[str, dict] = {}
    for t in planned:
        for u in t.utterances:
            if (u.utt_id in ok) if in_run(t) else u.path.exists():
                s = totals.setdefault(t.speaker.subset, {"utterances": 0, "seconds": 0.0, "speakers": {}, "voices": set()})
                s["utterances"] += 1
                s["seconds"] += sf.info(str(u.path)).duration
                s["speakers"][t.speaker.speaker_id] = t.speaker
                s["voices"].add(t.speaker.voice.key)
    speakers = {k: v for s in totals.values() for k, v in s["speakers"].items()}
    with open(cfg.out_dir / "SPEAKERS.TXT", "w", encoding="utf-8") as f:
        f.write(";ID  |SUBSET|VOICE                          |RATE |PITCH\n")
        for sid, s in sorted(speakers.items()):
            f.write(f"{sid:<4}|{s.subset:<6}|{s.voice.key:<31}|{s.rate:.3f}|{s.pitch:.3f}\n")
    synthesized = sum(s for _, s, e in results if not e)
    summary = {
        "config": _config_record(cfg),
        "voices": [v.key for v in voices],
        "subsets": {k: {"utterances": v["utterances"], "hours": round(v["seconds"] / 3600, 4),
                        "speakers": len(v["speakers"]), "voices": sorted(v["voices"])} for k, v in totals.items()},
        "synthesized_seconds": round(synthesized, 1),
        "wall_seconds": round(wall, 1),
        "x_real_time": round(synthesized / wall, 1) if wall > 0 and synthesized else None,
        "failed": [f"{u}: {e}" for u, e in failed[:50]],
        "num_failed": len(failed),
    }
    write_atomic(cfg.out_dir / "synth.json", json.dumps(summary, indent=2) + "\n")
    return summary
