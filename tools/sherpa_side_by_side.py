"""Speed of one model in sherpa-onnx and in asr, side by side in one process (issue 31): offline and streaming
real-time factor (processing seconds per audio second; lower is faster) at 1 and 2 threads, and each runtime's text
CER against `asr transcribe --decoder ctc_greedy`.

    .venv/bin/python tools/sherpa_side_by_side.py --audio ../shared/real/wav16k/*.wav --model demo

The model is exported with `asr export-sherpa` into a temporary folder first. asr offline: the API's
``transcribe(..., "ctc_greedy", vad=False, punctuate=False)`` (features, encoder, greedy search, word times);
asr streaming: :class:`asr.inference.streaming.Recognizer` with greedy partials (beam 1) and no second pass, fed
100-ms blocks; sherpa-onnx: ``OfflineRecognizer`` / ``OnlineRecognizer.from_wenet_ctc`` (chunk 16, 4 left chunks,
greedy search), fed the same way. Medians of ``--runs`` passes over all files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio", nargs="+", required=True)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    import torch

    import asr
    from asr.audio import load_audio
    from asr.evaluation.metrics import cer
    from asr.export.sherpa import export_sherpa, sherpa_recognizer, sherpa_texts
    from asr.inference.streaming import Recognizer, StreamingOptions

    audio = [load_audio(p) for p in args.audio]
    seconds = sum(len(x) for x in audio) / 16000
    model = asr.load_model(args.model)
    tmp = Path(tempfile.mkdtemp())
    export_sherpa(args.model, tmp)

    def timed(fn):
        fn()  # warm-up (and the texts)
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) / seconds

    def asr_offline():
        return [model.transcribe(x, "ctc_greedy", vad=False, punctuate=False).raw_text for x in audio]

    def asr_streaming():
        rec = Recognizer(model, StreamingOptions(beam=1, final="none", vad=False))
        texts = []
        for x in audio:
            s = rec.create_stream()
            for i in range(0, len(x), 1600):
                s.accept_waveform(x[i:i + 1600], 16000)
                while rec.is_ready(s):
                    rec.decode([s])
            s.input_finished()
            while rec.is_ready(s):
                rec.decode([s])
            texts.append(s.result.tentative)
        return texts

    rows, ref = [], asr_offline()
    for n in args.threads:
        torch.set_num_threads(n)
        off = sherpa_recognizer(tmp, streaming=False, num_threads=n)
        on = sherpa_recognizer(tmp, streaming=True, num_threads=n)

        def sherpa_offline():
            return sherpa_texts(off, audio)

        def sherpa_streaming():
            return sherpa_texts(on, audio, streaming=True)

        for name, fn in (("asr offline", asr_offline), ("sherpa-onnx offline", sherpa_offline),
                         ("asr streaming 640 ms", asr_streaming), ("sherpa-onnx streaming 640 ms", sherpa_streaming)):
            rtf = timed(fn)
            rows.append({"runtime": name, "threads": n, "rtf": round(rtf, 4),
                         "cer_vs_asr_ctc_greedy": round(cer(ref, fn()).rate, 4)})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{len(audio)} files, {seconds:.0f} s of audio; median of {args.runs} runs\n")
    print("| runtime | threads | RTF | CER vs asr ctc_greedy |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['runtime']} | {r['threads']} | {r['rtf']:.4f} | {100 * r['cer_vs_asr_ctc_greedy']:.2f}% |")


if __name__ == "__main__":
    main()
