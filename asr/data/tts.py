"""Text-to-speech engines from Debian's packages, behind one small interface.

A :class:`Voice` is one engine's voice; a speaker of the synthetic corpus is a voice with its
settings (speaking-rate and pitch factors). :func:`installed_voices` lists the voices whose engine
and data are on this machine; :func:`synthesize` renders a batch of texts with one voice, using one
process for the whole batch where the engine's start-up is costly (festival).

Engines: espeak-ng (formant voices), mbrola (diphone voices driven by espeak-ng), flite,
festival (diphone, mbrola and HTS voices), pico (SVOX pico2wave), RHVoice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence


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
}
ENGINE_PACKAGES = {
    "espeak-ng": "espeak-ng",
    "mbrola": "mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 (contrib/non-free)",
    "flite": "flite",
    "festival": "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts (+ festvox-us1..3, festvox-en1, "
                "festvox-rablpc16k, festvox-don from contrib/non-free)",
    "pico": "libttspico-utils (non-free)",
    "rhvoice": "rhvoice rhvoice-english (non-free)",
}


class SynthesisError(RuntimeError):
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


def _available(voice: Voice) -> bool:
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
    return False


def installed_voices(engines: Sequence[str] | None = None) -> list[Voice]:
    """The catalogue's voices that can run here, in catalogue order (optionally only ``engines``)."""
    unknown = set(engines or ()) - set(CATALOGUE)
    if unknown:
        raise ValueError(f"unknown TTS engine(s) {sorted(unknown)}; known: {sorted(CATALOGUE)}")
    return [v for e, names in CATALOGUE.items() if engines is None or e in engines
            for v in (Voice(e, n) for n in names) if _available(v)]


def parse_voice(spec: str) -> Voice:
    """``"engine:name"`` -> Voice (for ``--voices``)."""
    engine, sep, name = spec.partition(":")
    if not sep or engine not in CATALOGUE:
        raise ValueError(f"voice {spec!r}: expected ENGINE:NAME with ENGINE one of {sorted(CATALOGUE)}")
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
    else:
        raise SynthesisError(f"unknown engine {e!r}")
