"""Score several decoders on one cut set: the results table, per-utterance details and the trade-off plot."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

import jiwer
from lhotse import CutSet, Recording, SupervisionSegment

from asr.audio import AudioError, load_audio
from asr.errors import UserError
from asr.evaluation.evaluate import EvalResult, evaluate_cuts
from asr.evaluation.metrics import cer, wer
from asr.evaluation.plots import plot_wer_vs_rtf
from asr.files import write_atomic
from asr.search.methods import LM_USERS
from asr.search.options import DecodeOptions
from asr.text import normalize_text


def load_refs_tsv(path: str | os.PathLike):
    """A TSV of audio paths and references -> ``(lhotse CutSet, one-line errors for unreadable files)``. With a header, the columns ``id``,
    ``wav``/``path``/``audio`` and ``text``/``reference`` are used; without one, ``PATH<TAB>TEXT`` or
    ``ID<TAB>PATH<TAB>TEXT``. Relative paths are taken from the TSV's folder."""

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    rows = [(i, r) for i, r in enumerate(csv.reader(p.read_text(encoding="utf-8", errors="replace").splitlines(),
                                                      delimiter="\t", quoting=csv.QUOTE_NONE), 1) if r]
    if not rows:
        raise UserError(f"{p}: empty reference file")
    head = [h.strip().lower() for h in rows[0][1]]
    cols = None
    for pc in ("wav", "path", "audio"):
        for tc in ("text", "reference", "ref"):
            if pc in head and tc in head:
                cols = (head.index("id") if "id" in head else None, head.index(pc), head.index(tc))
                break
        if cols:
            break
    if cols:
        rows = rows[1:]
    cuts, errors = [], []
    for n, r in rows:
        if cols:
            if len(r) <= max(c for c in cols if c is not None):
                errors.append(f"{p}:{n}: expected {len(head)} tab-separated columns, found {len(r)}")
                continue
            rid, ap, text = (r[cols[0]] if cols[0] is not None else None), r[cols[1]], r[cols[2]]
        elif len(r) == 2:
            rid, ap, text = None, r[0], r[1]
        elif len(r) >= 3:
            rid, ap, text = r[0], r[1], r[2]
        else:
            errors.append(f"{p}:{n}: expected PATH<TAB>TEXT or ID<TAB>PATH<TAB>TEXT")
            continue
        audio = Path(ap) if Path(ap).is_absolute() else p.parent / ap
        try:
            load_audio(audio)  # the toolkit's checks and one-line error
            rec = Recording.from_file(audio, recording_id=rid or audio.stem)
        except (AudioError, Exception) as e:  # noqa: BLE001 - any unreadable file is skipped with its reason
            errors.append(str(e) if isinstance(e, AudioError) else f"{audio}: {e}")
            continue
        cut = rec.to_cut()
        cut.supervisions = [SupervisionSegment(rec.id, rec.id, 0.0, rec.duration, channel=0, text=text)]
        cuts.append(cut)
    return CutSet.from_cuts(cuts), errors


def details(result: EvalResult) -> str:
    """Per-utterance aligned reference/hypothesis, worst (most word errors) first."""

    blocks = []
    for cid, ref, hyp in result.rows:
        r, h = normalize_text(ref), normalize_text(hyp)
        if not r:
            errs, text = len(h.split()), f"REF: \nHYP: {h}\n"
        else:
            o = jiwer.process_words(r, h)
            errs = o.substitutions + o.deletions + o.insertions
            text = "\n".join(jiwer.visualize_alignment(o, show_measures=False).strip().splitlines()[1:]) + "\n"
        blocks.append((errs, len(r.split()), cid, text))
    blocks.sort(key=lambda b: (-b[0], b[2]))
    return "".join(f"{cid}  errors {e}/{n}\n{t}\n" for e, n, cid, t in blocks)


def spread_subset(cuts, n: int):
    """``n`` cuts evenly spaced over ``cuts`` (all of them when ``n`` is 0 or not smaller): manifests follow the
    corpus's folder order, so the first ``n`` may hear only some of its speakers."""
    ids = [c.id for c in cuts]
    if not n or n >= len(ids):
        return cuts
    return cuts.subset(cut_ids=[ids[i * len(ids) // n] for i in range(n)])


def speaker_labels(cuts) -> dict[str, str]:
    """Cut id -> the speaker's label for a per-speaker breakdown: the voice (synthetic corpus) or the reader's
    name (LibriSpeech) from the corpus's SPEAKERS.TXT when there is one (``CORPUS/SUBSET/SPK/CHAPTER/x.flac``),
    else the supervision's speaker id."""
    tables: dict[Path, dict[str, str]] = {}
    out = {}
    for c in cuts:
        spk = str(c.supervisions[0].speaker) if c.supervisions and c.supervisions[0].speaker else ""
        label = spk or "unknown"
        src = c.recording.sources[0].source if c.has_recording and c.recording.sources else ""
        parents = Path(str(src)).parents if src else []
        if spk and len(parents) > 3:
            root = parents[3]
            if root not in tables:
                tables[root] = _read_speakers_txt(root / "SPEAKERS.TXT")
            label = tables[root].get(spk, label)
        out[c.id] = label
    return out


def _read_speakers_txt(path: Path) -> dict[str, str]:
    """``ID -> VOICE`` (synthetic corpus) or ``ID -> NAME`` (LibriSpeech's SPEAKERS.TXT); {} when absent."""
    if not path.is_file():
        return {}
    header, col, rows = None, None, {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        cols = [x.strip() for x in line.lstrip(";").split("|")]
        if line.startswith(";"):
            if cols and cols[0].upper() == "ID":
                header = [x.upper() for x in cols]
                col = header.index("VOICE") if "VOICE" in header else header.index("NAME") if "NAME" in header else None
            continue
        if col is not None and len(cols) >= len(header):
            rows[cols[0]] = cols[col]
    return rows


def breakdown_table(result: EvalResult, labels: dict[str, str], what: str = "speaker") -> str:
    """WER and CER of ``result`` per label (e.g. per voice), worst first, as a markdown table."""

    groups: dict[str, list[tuple[str, str]]] = {}
    for cid, ref, hyp in result.rows:
        groups.setdefault(labels.get(cid, "unknown"), []).append((ref, normalize_text(hyp)))
    scored = []
    for label, pairs in groups.items():
        refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
        scored.append((wer(refs, hyps), cer(refs, hyps), len(pairs), label))
    scored.sort(key=lambda x: (-x[0].rate, x[3]))
    lines = [f"| {what} | utterances | words | WER | CER |", "|---|---|---|---|---|"]
    lines += [f"| {label} | {n} | {w.ref_len} | {100 * w.rate:.2f}% | {100 * c.rate:.2f}% |" for w, c, n, label in scored]
    return "\n".join(lines)


def results_table(name: str, results: list[EvalResult]) -> str:
    lines = ["| subset | decoder | utterances | WER | S / D / I | CER | RTF (whole decode) |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        w = r.wer
        lines.append(f"| {name} | {r.method} | {r.utterances} | {100 * w.rate:.2f}% | {w.substitutions} / {w.deletions} / "
                     f"{w.insertions} | {100 * r.cer.rate:.2f}% | {r.rtf:.4f} |")
    return "\n".join(lines)


def evaluate_and_report(loaded, cuts, name: str, methods: list[str], opts: DecodeOptions = DecodeOptions(),
                        out_dir: Path | None = None, device: str = "cpu",
                        echo: Callable[[str], None] | None = None, compare_lm: bool = False,
                        by_speaker: bool = False) -> str:
    """Decode ``cuts`` with every method; returns the markdown table, and with ``out_dir`` writes
    ``NAME_METHOD.details.txt``, ``NAME.results.json``, ``NAME.results.md`` and ``NAME.wer_vs_rtf.png``.
    With an LM in ``opts``, the methods that use it are labelled ``METHOD+lm``; ``compare_lm`` also decodes
    them without it, so the table and the plot show what the LM gives each decoder and what it costs.
    ``by_speaker``: also WER/CER per speaker (per voice on the synthetic corpus), printed and written to
    ``NAME_METHOD.by_speaker.md``."""

    runs = []
    for m in methods:
        if opts.lm and m in LM_USERS:
            if compare_lm:
                runs.append((m, m, replace(opts, lm="")))
            runs.append((f"{m}+lm", m, opts))
        else:
            runs.append((m, m, opts))
    results, used = [], []
    labels = speaker_labels(cuts) if by_speaker else {}
    for label, m, o in runs:
        r = replace(evaluate_cuts(loaded, cuts, m, o, device=device), method=label)
        results.append(r)
        used.append(o)
        if echo:
            echo(f"{name} {label}: WER {r.wer}  CER {100 * r.cer.rate:.2f}%  RTF {r.rtf:.4f}")
        if out_dir:
            write_atomic(Path(out_dir) / f"{name}_{label}.details.txt", details(r))
        if by_speaker:
            t = breakdown_table(r, labels, "speaker")
            if echo:
                echo(f"{name} {label} per speaker:\n{t}")
            if out_dir:
                write_atomic(Path(out_dir) / f"{name}_{label}.by_speaker.md", t + "\n")
    table = results_table(name, results)
    if out_dir:
        out = Path(out_dir)
        write_atomic(out / f"{name}.results.md", table + "\n")
        write_atomic(out / f"{name}.results.json", json.dumps([
            {"subset": name, "decoder": r.method, "utterances": r.utterances, "audio_seconds": round(r.audio_seconds, 2),
             "wer": r.wer.rate, "cer": r.cer.rate, "substitutions": r.wer.substitutions, "deletions": r.wer.deletions,
             "insertions": r.wer.insertions, "ref_words": r.wer.ref_len, "rtf": r.rtf,
             "options": {k: v for k, v in o.__dict__.items()}} for r, o in zip(results, used)], indent=2) + "\n")
        plot_wer_vs_rtf(results, out / f"{name}.wer_vs_rtf.png", title=f"{loaded.path.name}: {name}")
    return table
