"""Batch transcription: many files, long files, several output formats, bad files reported and skipped.

Long recordings are cut into segments of at most ``max_segment`` seconds at the quietest point near each
boundary, decoded in duration-bounded batches (across files), and stitched back by their offsets. Each
file's outputs are written atomically as soon as all its segments are decoded.
"""

from __future__ import annotations

import collections
import glob
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import soundfile as sf
import soxr
import torch
from lhotse import load_manifest

from asr.audio import MAX_RATE, MIN_RATE, SAMPLE_RATE, AudioError, audio_info, load_audio
from asr.data.batching import fbank_batch
from asr.errors import UserError, first_line
from asr.features import features
from asr.files import write_atomic
from asr.inference.captions import caption_cues, srt, vtt
from asr.inference.decode import decode_features
from asr.inference.punctuate import punctuate_result
from asr.inference.vad import speech_probabilities_batch, speech_segments
from asr.models.punctuator import Punctuator
from asr.results import Result, Segment
from asr.search.options import DecodeOptions

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".sph")
FORMATS = ("txt", "json", "srt", "vtt", "tsv")


# ---------------------------------------------------------------------------------------- inputs
def output_id(raw: str) -> str | None:
    """An input id as a safe output file stem, or None when it names a place outside the output folder
    (absolute, or with a ``..`` component). Path separators and other unsafe characters become ``_``."""
    raw = raw.strip()
    if not raw or raw.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", raw) or ".." in re.split(r"[/\\]", raw):
        return None
    safe = _UNSAFE.sub("_", raw)
    return None if safe.strip(".") == "" else safe


_UNSAFE = re.compile(r"[^\w.+,=@-]")


def expand_inputs(items: Iterable[str]) -> tuple[list[tuple[str, Path]], list[str]]:
    """Files, folders (searched recursively for audio), globs and manifests -> ``[(id, path)]`` plus
    one-line errors for inputs that match nothing or cannot be used. Manifests: lhotse recordings/cuts
    ``.jsonl(.gz)``, or a ``.list``/``.scp`` file with ``PATH`` or ``ID PATH`` per line. Ids become output
    file names: they are made safe with :func:`output_id`, and one that would escape the output folder is
    refused with an error."""
    out: list[tuple[str, Path]] = []
    errors: list[str] = []

    def add(fid: str, path: Path, where: str) -> None:
        safe = output_id(fid)
        if safe is None:
            errors.append(f"{where}: id {fid!r} would write outside the output folder (absolute or '..'); skipped")
        else:
            out.append((safe, path))

    for item in items:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file())
            if not files:
                errors.append(f"{item}: no audio files in this folder")
            for f in files:
                add(f.stem, f, str(f))
        elif p.name.endswith((".jsonl", ".jsonl.gz")) and p.is_file():
            try:
                entries = _from_lhotse(p)
            except Exception as e:  # noqa: BLE001 - any unreadable manifest is one line, the rest go on
                errors.append(f"{item}: not a readable lhotse manifest ({type(e).__name__}: {first_line(e)})")
                continue
            for fid, path in entries:
                add(fid, path, str(item))
        elif p.suffix in (".list", ".scp") and p.is_file():
            for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                parts = line.split(maxsplit=1)
                if len(parts) == 1:
                    add(Path(parts[0]).stem, Path(parts[0]), f"{item}:{n}")
                elif parts:
                    add(parts[0], Path(parts[1].strip()), f"{item}:{n}")
        elif any(c in item for c in "*?[") and not p.exists():
            files = sorted(Path(f) for f in glob.glob(item, recursive=True) if Path(f).is_file())
            if not files:
                errors.append(f"{item}: no file matches this pattern")
            for f in files:
                add(f.stem, f, str(f))
        else:
            add(p.stem, p, item)  # a missing file is reported when it is read
    return out, errors



def _from_lhotse(path: Path) -> list[tuple[str, Path]]:
    m = load_manifest(path)
    out = []
    for item in m:
        rec = getattr(item, "recording", item)
        src = rec.sources[0].source if rec.sources else ""
        out.append((getattr(item, "id", rec.id), Path(src)))
    return out


# ---------------------------------------------------------------------------------------- segmentation
def split_points(audio: np.ndarray, max_segment: float = 20.0, search: float = 4.0) -> list[tuple[int, int]]:
    """Cut ``audio`` into ``[(start, end)]`` sample ranges of at most ``max_segment`` seconds (at least 1),
    each cut at the quietest 100 ms within the last ``search`` seconds (at most half a segment) before
    the limit."""
    if not max_segment >= 1.0:
        raise UserError(f"the maximum segment length must be at least 1 second, not {max_segment}")
    n = len(audio)
    limit = int(max_segment * SAMPLE_RATE)
    if n <= limit:
        return [(0, n)]
    win = SAMPLE_RATE // 10
    span = min(int(search * SAMPLE_RATE), limit // 2) // win * win  # whole windows, inside the segment
    out, start = [], 0
    while n - start > limit:
        lo = start + limit - span
        k = span // win
        energy = (audio[lo: lo + k * win].reshape(k, win).astype(np.float64) ** 2).mean(1)
        cut = lo + int(energy.argmin()) * win + win // 2
        out.append((start, cut))
        start = cut
    out.append((start, n))
    return out


# ---------------------------------------------------------------------------------------- outputs
def render(result: Result, fmt: str, extra: dict | None = None) -> str:
    if fmt == "txt":
        return result.text + "\n"
    if fmt == "json":
        return json.dumps(result.as_dict(extra), indent=2, ensure_ascii=False) + "\n"
    if fmt == "tsv":
        rows = ["start\tend\tword\tconfidence"]
        rows += [f"{int(round(w.start * 1000))}\t{int(round(w.end * 1000))}\t{w.shown}\t{w.confidence:.3f}" for w in result.words]
        return "\n".join(rows) + "\n"
    if fmt == "srt":
        return srt(caption_cues(result.words))
    if fmt == "vtt":
        return vtt(caption_cues(result.words))
    raise UserError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


# ---------------------------------------------------------------------------------------- the job
SORT_BATCHES = 4  # segments are sorted by length over this many batches' worth of audio before decoding
VAD_BATCH_SPREAD = 5.0  # seconds: files whose lengths differ more than this from the group's mean are cut apart
@dataclass
class _Pending:
    id: str
    path: Path | None
    duration: float
    parts: dict[int, Segment] = field(default_factory=dict)
    ranges: list[tuple[float, float]] = field(default_factory=list)  # (start s, end s) of each segment
    complete: bool = True  # every segment is known (a long file read in blocks: not until its last block)


@dataclass(frozen=True)
class TranscribeSummary:
    files: int
    failed: list[str]  # one-line errors
    audio_seconds: float
    wall_seconds: float

    @property
    def rtf(self) -> float:
        return self.wall_seconds / self.audio_seconds if self.audio_seconds else float("nan")


def _decode_batch(loaded, items: list[tuple[_Pending, int, np.ndarray]], method: str, opts: DecodeOptions,
                  device: str) -> None:
    """Decode one batch of ``(file, segment index, samples)``; each file's part ``k`` gets its segment."""
    feats = [features(seg, loaded.model.cfg.frontend) for _, _, seg in items]
    # shorter than the encoder front end's receptive field: no encoder frame at all -> empty text
    ok = [i for i, f in enumerate(feats) if f.shape[0] >= loaded.model.encoder.receptive_field]
    results: dict[int, Segment] = {i: Segment("", *items[i][0].ranges[items[i][1]]) for i in range(len(items))}
    if ok:
        padded, lens = fbank_batch([feats[i] for i in ok])
        offs = [items[i][0].ranges[items[i][1]][0] for i in ok]
        with torch.inference_mode():
            outs = decode_features(loaded.model, loaded.tokenizer, padded.to(device), lens.to(device), method, opts, offs)
        results.update(dict(zip(ok, outs)))
    for i, (pend, k, _) in enumerate(items):
        pend.parts[k] = results[i]


def transcribe_files(loaded, inputs: list[tuple[str, Path | np.ndarray]], method: str = "ctc_greedy",
                     opts: DecodeOptions = DecodeOptions(), max_batch_seconds: float = 60.0, max_segment: float = 20.0,
                     device: str = "cpu", on_result: Callable[[Result], None] | None = None,
                     on_error: Callable[[str], None] | None = None,
                     on_progress: Callable[[float, float], None] | None = None, vad=None,
                     punctuator: Punctuator | None = None) -> TranscribeSummary:
    """Decode every input (``(id, path)``, or ``(id, samples)`` at 16 kHz); ``on_result`` gets each finished
    file, ``on_error`` each one-line failure, ``on_progress(audio_seconds_done, wall_seconds)`` follows the batches.
    ``vad`` (:func:`asr.inference.vad.load_vad`): cut at speech boundaries and decode speech only, else cut at
    quiet points; ``punctuator``: each file's text cased and punctuated (its raw words kept). A file longer than
    ``LONG_FILE_SECONDS`` is read, cut and decoded block by block (:func:`read_blocks`): memory stays flat however
    long it is, and progress moves while it is read."""
    if getattr(loaded.tokenizer, "cased", False):  # the model writes cased, punctuated text itself (Whisper)
        punctuator = None
    job = _Job(loaded, method, opts, max_batch_seconds, max_segment, device, on_result, on_progress, vad, punctuator)
    read, read_seconds = [], 0.0  # files waiting for the VAD: short files are cut together, long ones alone
    for fid, path in inputs:
        try:
            long = not isinstance(path, np.ndarray) and audio_info(path)[1] > LONG_FILE_SECONDS
            if long:
                job.cut(read)
                read, read_seconds = [], 0.0
                job.long_file(fid, Path(path))
                continue
            audio = path if isinstance(path, np.ndarray) else load_audio(path)
        except AudioError as e:
            job.failed.append(str(e))
            if on_error:
                on_error(str(e))
            continue
        job.files += 1
        job.total_audio += len(audio) / SAMPLE_RATE
        if read and abs(len(audio) / SAMPLE_RATE - read_seconds / len(read)) > VAD_BATCH_SPREAD:
            job.cut(read)  # lengths far apart would waste the batch on padding
            read, read_seconds = [], 0.0
        read.append((fid, path, audio))
        read_seconds += len(audio) / SAMPLE_RATE
        if read_seconds >= max_batch_seconds:
            job.cut(read)
            read, read_seconds = [], 0.0
    job.cut(read)
    job.flush()
    return TranscribeSummary(job.files, job.failed, job.total_audio, time.perf_counter() - job.t0)


LONG_FILE_SECONDS = 600.0  # files longer than this are read in blocks (flat memory)
BLOCK_SECONDS = 300.0  # about this much audio a block, cut at a quiet point


class _Job:
    """One :func:`transcribe_files` run: the files read and not yet emitted (in input order), the segments queued
    for decoding, and the counts."""

    def __init__(self, loaded, method, opts, max_batch_seconds, max_segment, device, on_result, on_progress, vad,
                 punctuator):
        self.loaded, self.method, self.opts, self.device = loaded, method, opts, device
        self.max_batch_seconds, self.max_segment, self.vad, self.punctuator = max_batch_seconds, max_segment, vad, punctuator
        self.on_result, self.on_progress = on_result, on_progress
        self.t0 = time.perf_counter()
        self.failed: list[str] = []
        self.files, self.total_audio, self.done_audio = 0, 0.0, 0.0
        self.queue: list[tuple[_Pending, int, np.ndarray]] = []  # (file, segment index, samples)
        self.queued = 0.0
        self.waiting: collections.deque[_Pending] = collections.deque()  # files read, not yet emitted

    def emit_ready(self) -> None:
        """Emit the finished files at the front (results come out in input order)."""
        while self.waiting and self.waiting[0].complete and len(self.waiting[0].parts) == len(self.waiting[0].ranges):
            pend = self.waiting.popleft()
            if self.on_result:
                result = Result.join([pend.parts[j] for j in range(len(pend.ranges))], pend.duration, pend.id, pend.path)
                self.on_result(punctuate_result(result, self.punctuator) if self.punctuator is not None else result)

    def flush(self) -> None:
        """Decode the queued segments in batches of similar length (of at most ``max_batch_seconds`` each): sorted,
        so that padding wastes little (64 short files: 1.14x the audio instead of 1.77x in reading order)."""
        order = sorted(self.queue, key=lambda item: len(item[2]))
        batch, seconds = [], 0.0
        for item in order:
            batch.append(item)
            seconds += len(item[2]) / SAMPLE_RATE
            if seconds >= self.max_batch_seconds:
                _decode_batch(self.loaded, batch, self.method, self.opts, self.device)
                batch, seconds = [], 0.0
        if batch:
            _decode_batch(self.loaded, batch, self.method, self.opts, self.device)
        self.done_audio += sum(len(seg) for _, _, seg in self.queue) / SAMPLE_RATE
        self.queue, self.queued = [], 0.0
        self.emit_ready()
        if self.on_progress:
            self.on_progress(self.done_audio, time.perf_counter() - self.t0)

    def _queue(self, pend: _Pending, audio: np.ndarray, probs, offset: float = 0.0) -> None:
        """``audio``'s speech segments (at ``offset`` seconds in its file) onto the decoding queue."""
        vad = self.vad
        ranges = (speech_segments(audio, self.max_segment, vad, split=split_points, probs=probs) if vad is not None
                  else split_points(audio, self.max_segment))
        for a, b in ranges:
            pend.ranges.append((offset + a / SAMPLE_RATE, offset + b / SAMPLE_RATE))
            self.queue.append((pend, len(pend.ranges) - 1, audio[a:b]))
            self.queued += (b - a) / SAMPLE_RATE
            if self.queued >= SORT_BATCHES * self.max_batch_seconds:
                self.flush()

    def cut(self, read: list[tuple[str, Path | np.ndarray, np.ndarray]]) -> None:
        """Files read -> their speech segments (silero-vad batched over the files) -> the decoding queue."""
        if not read:
            return
        probs = speech_probabilities_batch([a for _, _, a in read], self.vad) if self.vad is not None else [None] * len(read)
        for (fid, path, audio), p in zip(read, probs):
            pend = _Pending(fid, None if isinstance(path, np.ndarray) else Path(path), len(audio) / SAMPLE_RATE)
            self.waiting.append(pend)  # no speech at all: no range, an empty result once the files before it are out
            self._queue(pend, audio, p)
        self.emit_ready()

    def long_file(self, fid: str, path: Path) -> None:
        """A long file, block by block: each block's VAD, its segments queued (and decoded as the queue fills)."""
        pend = _Pending(fid, path, 0.0, complete=False)
        self.waiting.append(pend)
        try:
            for offset, block in read_blocks(path):
                probs = speech_probabilities_batch([block], self.vad)[0] if self.vad is not None else None
                self._queue(pend, block, probs, offset)
                pend.duration = offset + len(block) / SAMPLE_RATE
                self.total_audio += len(block) / SAMPLE_RATE
        except AudioError:  # unreadable part-way: the file fails, its queued segments are dropped
            self.waiting.remove(pend)
            self.queue = [q for q in self.queue if q[0] is not pend]
            raise
        self.files += 1
        pend.complete = True
        self.emit_ready()


def read_blocks(path: str | Path, block_seconds: float = BLOCK_SECONDS, search: float = 10.0):
    """A long file as ``(offset_seconds, samples)`` blocks of mono 16 kHz float32, each about ``block_seconds`` long
    and ending at the quietest 100 ms of its last ``search`` seconds (a speech segment is rarely cut there). Read and
    resampled a block at a time: memory stays flat. Raises :class:`AudioError` (one line) for a bad file."""
    try:
        f = sf.SoundFile(str(path))
    except Exception as e:  # noqa: BLE001 - libsndfile raises several types
        raise AudioError(path, f"cannot decode audio ({first_line(e)})") from None
    with f:
        rate = f.samplerate
        if not MIN_RATE <= rate <= MAX_RATE:
            raise AudioError(path, f"its header says {rate} Hz: a sample rate must be in {MIN_RATE}..{MAX_RATE}")
        resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32") if rate != SAMPLE_RATE else None
        carry, offset = np.zeros(0, np.float32), 0.0
        limit, win = int(block_seconds * SAMPLE_RATE), SAMPLE_RATE // 10
        for raw in f.blocks(blocksize=int(60 * rate), dtype="float32", always_2d=True):
            x = raw.mean(1).astype(np.float32)
            x = resampler.resample_chunk(x) if resampler is not None else x
            carry = np.concatenate([carry, x])
            while len(carry) > limit + int(search * SAMPLE_RATE):
                lo = limit - int(search * SAMPLE_RATE)
                k = int(search * SAMPLE_RATE) // win
                energy = (carry[lo: lo + k * win].reshape(k, win).astype(np.float64) ** 2).mean(1)
                cut = lo + int(energy.argmin()) * win + win // 2
                yield offset, carry[:cut]
                offset += cut / SAMPLE_RATE
                carry = carry[cut:]
        if resampler is not None:
            carry = np.concatenate([carry, resampler.resample_chunk(np.zeros(0, np.float32), last=True)])
        if len(carry):
            yield offset, carry


def unique_ids(inputs: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """Ids become output file names: a repeated id gets ``_1``, ``_2``... (skipping any name another input
    already has, compared without case) so no output overwrites another."""
    taken = {fid.casefold() for fid, _ in inputs}
    used: set[str] = set()
    out = []
    for fid, path in inputs:
        name, n = fid, 0
        while name.casefold() in used or (n and name.casefold() in taken):
            n += 1
            name = f"{fid}_{n}"
        used.add(name.casefold())
        out.append((name, path))
    return out


__all__ = ["read_blocks", "LONG_FILE_SECONDS", "expand_inputs", "write_outputs", "outputs_exist", "output_id", "split_points", "transcribe_files", "render", "FORMATS", "TranscribeSummary",
           "unique_ids"]


def write_outputs(result: Result, output_dir: Path, formats, extra: dict | None = None) -> list[str]:
    """Write ``OUTPUT_DIR/ID.FORMAT`` for each format, atomically. Returns one-line errors for the files that
    could not be written (the batch goes on; the caller keeps the text)."""
    errors = []
    for f in formats:
        target = Path(output_dir) / f"{result.id}.{f}"
        try:
            write_atomic(target, render(result, f, extra))
        except OSError as e:
            errors.append(f"{target}: cannot write ({e.strerror or e})")
    return errors


def outputs_exist(fid: str, output_dir: Path, formats) -> bool:
    """Whether every output of an input is already there (``--skip-existing`` resumes a killed job)."""
    return all((Path(output_dir) / f"{fid}.{f}").is_file() for f in formats)
