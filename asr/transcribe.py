"""Batch transcription: many files, long files, several output formats, bad files reported and skipped.

Long recordings are cut into segments of at most ``max_segment`` seconds at the quietest point near each
boundary, decoded in duration-bounded batches (across files), and stitched back by their offsets. Each
file's outputs are written atomically as soon as all its segments are decoded.
"""

from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, AudioError, load_audio
from asr.decode import DecodeOptions, Transcript, decode_features
from asr.features import fbank
from asr.search.align import Word

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".sph")
FORMATS = ("txt", "json", "srt", "vtt", "tsv")


# ---------------------------------------------------------------------------------------- inputs
def expand_inputs(items: Iterable[str]) -> tuple[list[tuple[str, Path]], list[str]]:
    """Files, folders (searched recursively for audio), globs and manifests -> ``[(id, path)]`` plus
    one-line errors for inputs that match nothing. Manifests: lhotse recordings/cuts ``.jsonl(.gz)``, or a
    ``.list``/``.scp`` file with ``PATH`` or ``ID PATH`` per line."""
    out: list[tuple[str, Path]] = []
    errors: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file())
            if not files:
                errors.append(f"{item}: no audio files in this folder")
            out += [(f.stem, f) for f in files]
        elif p.name.endswith((".jsonl", ".jsonl.gz")) and p.is_file():
            out += _from_lhotse(p)
        elif p.suffix in (".list", ".scp") and p.is_file():
            for line in p.read_text().splitlines():
                parts = line.split(maxsplit=1)
                if len(parts) == 1:
                    out.append((Path(parts[0]).stem, Path(parts[0])))
                elif parts:
                    out.append((parts[0], Path(parts[1])))
        elif any(c in item for c in "*?[") and not p.exists():
            files = sorted(Path(f) for f in glob.glob(item, recursive=True) if Path(f).is_file())
            if not files:
                errors.append(f"{item}: no file matches this pattern")
            out += [(f.stem, f) for f in files]
        else:
            out.append((p.stem, p))  # a missing file is reported when it is read
    return out, errors


def _from_lhotse(path: Path) -> list[tuple[str, Path]]:
    from lhotse import load_manifest

    m = load_manifest(path)
    out = []
    for item in m:
        rec = getattr(item, "recording", item)
        src = rec.sources[0].source if rec.sources else ""
        out.append((getattr(item, "id", rec.id), Path(src)))
    return out


# ---------------------------------------------------------------------------------------- segmentation
def split_points(audio: np.ndarray, max_segment: float = 20.0, search: float = 4.0) -> list[tuple[int, int]]:
    """Cut ``audio`` into ``[(start, end)]`` sample ranges of at most ``max_segment`` seconds, each cut at
    the quietest 100 ms within the last ``search`` seconds before the limit."""
    n = len(audio)
    limit = int(max_segment * SAMPLE_RATE)
    if n <= limit:
        return [(0, n)]
    win = SAMPLE_RATE // 10
    out, start = [], 0
    while n - start > limit:
        lo = start + limit - int(search * SAMPLE_RATE)
        seg = audio[lo: start + limit]
        k = len(seg) // win
        energy = (seg[: k * win].reshape(k, win).astype(np.float64) ** 2).mean(1)
        cut = lo + int(energy.argmin()) * win + win // 2
        out.append((start, cut))
        start = cut
    out.append((start, n))
    return out


# ---------------------------------------------------------------------------------------- outputs
@dataclass
class FileResult:
    id: str
    path: Path
    duration: float
    text: str
    words: list[Word] = field(default_factory=list)

    def as_dict(self, extra: dict | None = None) -> dict:
        return {"id": self.id, "path": str(self.path), "duration": round(self.duration, 3), "text": self.text,
                "words": [w.as_dict() for w in self.words], **(extra or {})}


def timestamp(seconds: float, sep: str) -> str:
    """``HH:MM:SS<sep>mmm`` (sep ',' for SRT, '.' for WebVTT)."""
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def caption_cues(words: list[Word], max_chars: int = 42, max_seconds: float = 5.0, gap: float = 1.0) -> list[tuple[float, float, str]]:
    """Group words into caption cues: a new cue when the line would pass ``max_chars`` or ``max_seconds``,
    or after a pause longer than ``gap``."""
    cues: list[tuple[float, float, str]] = []
    cur: list[Word] = []
    for w in words:
        if cur and (len(" ".join(x.word for x in cur + [w])) > max_chars or w.end - cur[0].start > max_seconds
                    or w.start - cur[-1].end > gap):
            cues.append((cur[0].start, cur[-1].end, " ".join(x.word for x in cur)))
            cur = []
        cur.append(w)
    if cur:
        cues.append((cur[0].start, cur[-1].end, " ".join(x.word for x in cur)))
    return cues


def render(result: FileResult, fmt: str, extra: dict | None = None) -> str:
    if fmt == "txt":
        return result.text + "\n"
    if fmt == "json":
        return json.dumps(result.as_dict(extra), indent=2, ensure_ascii=False) + "\n"
    if fmt == "tsv":
        rows = ["start\tend\tword\tconfidence"]
        rows += [f"{int(round(w.start * 1000))}\t{int(round(w.end * 1000))}\t{w.word}\t{w.confidence:.3f}" for w in result.words]
        return "\n".join(rows) + "\n"
    cues = caption_cues(result.words)
    if fmt == "srt":
        return "".join(f"{i}\n{timestamp(a, ',')} --> {timestamp(b, ',')}\n{t}\n\n" for i, (a, b, t) in enumerate(cues, 1))
    if fmt == "vtt":
        return "WEBVTT\n\n" + "".join(f"{timestamp(a, '.')} --> {timestamp(b, '.')}\n{t}\n\n" for a, b, t in cues)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------- the job
@dataclass
class _Pending:
    id: str
    path: Path
    duration: float
    parts: dict[int, Transcript] = field(default_factory=dict)
    offsets: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class TranscribeSummary:
    files: int
    failed: list[str]  # one-line errors
    audio_seconds: float
    wall_seconds: float

    @property
    def rtf(self) -> float:
        return self.wall_seconds / self.audio_seconds if self.audio_seconds else float("nan")


def transcribe_files(lm, inputs: list[tuple[str, Path]], method: str = "ctc_greedy",
                     opts: DecodeOptions = DecodeOptions(), max_batch_seconds: float = 60.0, max_segment: float = 20.0,
                     device: str = "cpu", on_result: Callable[[FileResult], None] | None = None,
                     on_error: Callable[[str], None] | None = None,
                     on_progress: Callable[[float, float], None] | None = None) -> TranscribeSummary:
    """Decode every input; ``on_result`` gets each finished file, ``on_error`` each one-line failure,
    ``on_progress(audio_seconds_done, wall_seconds)`` follows the batches."""
    t0 = time.perf_counter()
    failed: list[str] = []
    done_audio = 0.0
    queue: list[tuple[_Pending, int, np.ndarray]] = []  # (file, segment index, samples)
    queued = 0.0
    files = 0

    def flush() -> None:
        nonlocal queue, queued, done_audio
        if not queue:
            return
        feats = [fbank(seg) for _, _, seg in queue]
        lens = torch.tensor([f.shape[0] for f in feats])
        ok = [i for i, n in enumerate(lens.tolist()) if n >= 8]  # too short for the encoder -> empty text
        results: dict[int, Transcript] = {i: Transcript("", (), 0.0) for i in range(len(queue))}
        if ok:
            padded = torch.nn.utils.rnn.pad_sequence([feats[i] for i in ok], batch_first=True).to(device)
            offs = [queue[i][0].offsets[queue[i][1]] for i in ok]
            with torch.inference_mode():
                outs = decode_features(lm.model, lm.tokenizer, padded, lens[ok].to(device), method, opts, offs)
            results.update(dict(zip(ok, outs)))
        for i, (pend, k, seg) in enumerate(queue):
            pend.parts[k] = results[i]
            done_audio += len(seg) / SAMPLE_RATE
            if len(pend.parts) == len(pend.offsets):
                parts = [pend.parts[j] for j in range(len(pend.offsets))]
                text = " ".join(p.text for p in parts if p.text)
                words = [w for p in parts for w in p.words]
                if on_result:
                    on_result(FileResult(pend.id, pend.path, pend.duration, text, words))
        queue, queued = [], 0.0
        if on_progress:
            on_progress(done_audio, time.perf_counter() - t0)

    for fid, path in inputs:
        try:
            audio = load_audio(path)
        except AudioError as e:
            failed.append(str(e))
            if on_error:
                on_error(str(e))
            continue
        files += 1
        ranges = split_points(audio, max_segment)
        pend = _Pending(fid, Path(path), len(audio) / SAMPLE_RATE, offsets=[a / SAMPLE_RATE for a, _ in ranges])
        for k, (a, b) in enumerate(ranges):
            queue.append((pend, k, audio[a:b]))
            queued += (b - a) / SAMPLE_RATE
            if queued >= max_batch_seconds:
                flush()
    flush()
    return TranscribeSummary(files, failed, done_audio, time.perf_counter() - t0)


def unique_ids(inputs: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """Ids become output file names: a repeated id gets ``_1``, ``_2``... so no output overwrites another."""
    seen: dict[str, int] = {}
    out = []
    for fid, path in inputs:
        n = seen.get(fid, 0)
        seen[fid] = n + 1
        out.append((fid if n == 0 else f"{fid}_{n}", path))
    return out


__all__ = ["expand_inputs", "split_points", "transcribe_files", "render", "caption_cues", "write_atomic", "FORMATS",
           "FileResult", "TranscribeSummary", "unique_ids", "timestamp"]
