"""A corpus described by one TSV manifest (recorded speech such as ``../shared/speech``) -> lhotse cuts.

The TSV has a header; the columns used are ``id``, ``path`` (or ``wav`` / ``audio``; relative paths are taken
from the TSV's folder), ``text_norm`` (or ``text``), and, when present, ``speaker``, ``source``, ``split`` and
``kind``. Rows without a ``split`` column count as ``train``.

Subsets written into ``out_dir`` (the names every other command takes with ``--subset``)::
    NAME_SPLIT            every row of that split              e.g. real_train, real_dev, real_test
    NAME_SPLIT_KIND       the rows of one kind, when a split   e.g. real_train_sentence, real_train_word
                          holds several kinds

Cuts are stored in a seeded random order, so the first N of a subset (what validation reads with
``train.valid_max_cuts``) are a random sample of its speakers. Audio headers are read once (libsndfile: wav, flac, ogg/opus, mp3); a row whose file is missing or
unreadable is reported with its line number and cause and left out, and the import goes on.
"""

from __future__ import annotations

import csv
import logging
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf
from lhotse import AudioSource, CutSet, Recording, SupervisionSegment

from asr.data.prepare import PrepareError, cuts_path
from asr.errors import first_line
from asr.files import atomic_path
from asr.text import normalize_text

log = logging.getLogger("asr.data")

_PATH_COLUMNS = ("path", "wav", "audio")
_TEXT_COLUMNS = ("text_norm", "text", "reference")


def read_tsv_rows(tsv: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """The manifest's rows as dicts with ``id, audio, text, speaker, source, split, kind`` (``audio`` an absolute
    path, ``text`` normalised) and one-line errors for rows that cannot be used."""
    p = Path(tsv)
    if not p.is_file():
        raise PrepareError(f"{p}: no such file")
    with open(p, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        head = [h.strip().lower() for h in next(reader, [])]
        pc = next((c for c in _PATH_COLUMNS if c in head), None)
        tc = next((c for c in _TEXT_COLUMNS if c in head), None)
        if pc is None or tc is None:
            raise PrepareError(f"{p}: the header needs a path column ({'/'.join(_PATH_COLUMNS)}) and a text column "
                               f"({'/'.join(_TEXT_COLUMNS)}); found {head}")
        rows, errors = [], []
        for n, r in enumerate(reader, 2):
            if not r:
                continue
            if len(r) != len(head):
                errors.append(f"{p}:{n}: expected {len(head)} tab-separated columns, found {len(r)}")
                continue
            d = dict(zip(head, r))
            text = normalize_text(d[tc])
            if not text:
                errors.append(f"{p}:{n}: empty transcript")
                continue
            audio = Path(d[pc]) if Path(d[pc]).is_absolute() else p.parent / d[pc]
            rows.append({"id": d.get("id") or audio.stem, "audio": audio, "text": text, "line": n,
                         "speaker": d.get("speaker") or "unknown", "source": d.get("source") or p.stem,
                         "split": d.get("split") or "train", "kind": d.get("kind") or ""})
    return rows, errors


def _recording(row: dict):
    """One row -> lhotse Recording from the file's header, or an error line."""

    try:
        info = sf.info(str(row["audio"]))
    except Exception as e:  # noqa: BLE001 - missing, unreadable or not audio: reported, not fatal
        return None, f"{row['audio']} (line {row['line']}): {first_line(e)}"
    if info.frames <= 0:
        return None, f"{row['audio']} (line {row['line']}): no audio samples"
    rec = Recording(id=row["id"], sources=[AudioSource(type="file", channels=list(range(info.channels)),
                                                       source=str(row["audio"]))],
                    sampling_rate=info.samplerate, num_samples=info.frames, duration=info.frames / info.samplerate)
    return rec, None


def import_tsv(tsv: str | os.PathLike, out_dir: str | os.PathLike, name: str = "real",
               num_jobs: int = 4) -> tuple[dict[str, Path], list[str]]:
    """Write the cuts of every split (and kind) of the TSV corpus into ``out_dir``.

    Returns ``({subset: cuts path}, errors)``. Existing subset files are replaced (atomically).
    """

    rows, errors = read_tsv_rows(tsv)
    with ThreadPoolExecutor(max(1, num_jobs)) as ex:
        recs = list(ex.map(_recording, rows))
    groups: dict[str, list] = {}
    seen: set[str] = set()
    for row, (rec, err) in zip(rows, recs):
        if err:
            errors.append(err)
            continue
        if rec.id in seen:
            errors.append(f"{tsv}:{row['line']}: duplicate id {rec.id}")
            continue
        seen.add(rec.id)
        cut = rec.to_cut()
        cut.supervisions = [SupervisionSegment(rec.id, rec.id, 0.0, rec.duration, channel=0, text=row["text"],
                                               speaker=row["speaker"], language="English",
                                               custom={"source": row["source"], "kind": row["kind"]})]
        groups.setdefault(f"{name}_{row['split']}", []).append((row, cut))
    if not groups:
        raise PrepareError(f"{tsv}: no usable rows ({len(errors)} error(s); first: {errors[0] if errors else '-'})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def write(subset: str, cuts: list) -> None:
        target = cuts_path(out, subset)
        order = random.Random(0).sample(range(len(cuts)), len(cuts))  # seeded shuffle: the first N are a random
        with atomic_path(target) as tmp:                                # sample (validation reads the first N)
            CutSet.from_cuts([cuts[i] for i in order]).to_file(tmp)
        written[subset] = target
        log.info("%s: %d cuts, %.2f h", subset, len(cuts), sum(c.duration for c in cuts) / 3600)

    for subset, items in sorted(groups.items()):
        write(subset, [c for _, c in items])
        kinds = sorted({r["kind"] for r, _ in items if r["kind"]})
        if len(kinds) > 1:
            for k in kinds:
                write(f"{subset}_{k}", [c for r, c in items if r["kind"] == k])
    return written, errors
