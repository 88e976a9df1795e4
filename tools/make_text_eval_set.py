"""Speak sentences of a text file with TTS voices: an evaluation set for text the LM never saw.

    .venv/bin/python tools/make_text_eval_set.py /usr/share/common-licenses/GPL-3 --out data/work/ood_gpl \
        --voices rhvoice:slt pico:en-GB mbrola:en1 espeak-ng:en-gb-x-gbclan+f1 festival:en1_mbrola --limit 100

Writes OUT/wav/*.wav (16 kHz) and OUT/refs.tsv (``id<TAB>wav<TAB>text``) for ``asr eval --refs``. Sentences
are cut from the text, normalised like transcripts, kept at 4-24 words with no digits (the synthetic corpus's
rules), and spread over the voices round-robin (the defaults: the synthetic test subset's unseen voices).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TEST_VOICES = ["rhvoice:slt", "pico:en-GB", "mbrola:en1", "espeak-ng:en-gb-x-gbclan+f1", "festival:en1_mbrola"]


def main() -> None:
    import numpy as np
    import soundfile as sf

    from asr.audio import load_audio
    from asr.data.text_source import clean_sentences, split_sentences
    from asr.data.tts import SynthesisError, installed_voices, parse_voice, synthesize
    from asr.files import write_atomic

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("text", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--voices", nargs="+", default=TEST_VOICES)
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0.85, help="speaking-rate factor (the corpus draws 0.72-0.95)")
    a = ap.parse_args()
    have = {v.key for v in installed_voices()}
    voices = [parse_voice(v) for v in a.voices if v in have]
    if not voices:
        sys.exit(f"none of the voices {a.voices} is installed here")
    raw = [s for line in a.text.read_text(encoding="utf-8", errors="replace").split("\n\n")
           for s in split_sentences(line)]
    sentences = clean_sentences(raw)[: a.limit]
    wav_dir = a.out / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    rows = ["id\twav\ttext"]
    for i, text in enumerate(sentences):
        voice = voices[i % len(voices)]
        tmp = wav_dir / f".raw{i}.wav"
        try:
            synthesize(voice, [(text.lower(), tmp)], rate=a.rate)
            audio = load_audio(tmp)
        except (SynthesisError, ValueError) as e:
            print(f"skipped {i}: {e}", file=sys.stderr)
            continue
        finally:
            tmp.unlink(missing_ok=True)
        uid = f"{a.text.stem}-{i:04d}"
        sf.write(wav_dir / f"{uid}.wav", np.concatenate([np.zeros(3200, np.float32), audio, np.zeros(3200, np.float32)]),
                 16000)
        rows.append(f"{uid}\twav/{uid}.wav\t{text}")
    write_atomic(a.out / "refs.tsv", "\n".join(rows) + "\n")
    print(f"{len(rows) - 1} utterances -> {a.out / 'refs.tsv'}")


if __name__ == "__main__":
    main()
