"""Move a LibriSpeech-layout corpus to a machine that can only take a few tens of MB at a time (a lent GPU).

    python tools/opus_corpus.py pack CORPUS OUT [--subsets train dev] [--bitrate 16k] [--shards 2]
    python tools/opus_corpus.py unpack PACKDIR... --out CORPUS [--jobs 8]
    python tools/opus_corpus.py warm MANIFESTS SUBSET [--speed-perturb] [--jobs 16]

``pack`` writes each subset as ``--shards`` long Ogg Opus streams (the subset's flac files one after another,
ffmpeg's libopus; 16 kbit/s: 12.3 h of the synthetic corpus in 82 MB instead of 798 MB of flac) with an index
of (path, samples) per stream, plus every other file (transcripts, SPEAKERS.TXT, synth.json) in
``text.tar.gz``. ``unpack`` cuts the streams back into the same flac files (same paths, same sample counts;
the audio is Opus-coded, not bit-exact). ``warm`` fills the trainer's feature cache (``train.feature_cache:
auto``) for a subset, and its speed-perturbed copies, on all cores before training starts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SR = 16000


def pack(corpus: Path, out: Path, subsets: list[str], bitrate: str, shards: int) -> None:
    import soundfile as sf

    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out / "text.tar.gz", "w:gz") as t:
        for p in sorted(corpus.rglob("*")):
            if p.is_file() and p.suffix != ".flac":
                t.add(p, arcname=str(p.relative_to(corpus)))
    for sub in subsets:
        files = sorted((corpus / sub).rglob("*.flac"))
        if not files:
            raise SystemExit(f"{corpus / sub}: no flac files")
        for s in range(min(shards, len(files))):  # no empty streams
            name = f"{sub}.{s}"
            enc = subprocess.Popen(["ffmpeg", "-loglevel", "error", "-y", "-f", "s16le", "-ar", str(SR), "-ac", "1",
                                    "-i", "-", "-c:a", "libopus", "-b:a", bitrate, "-compression_level", "3",
                                    "-application", "audio", str(out / f"{name}.opus")], stdin=subprocess.PIPE)
            index = []
            for f in files[s::shards]:
                x, sr = sf.read(f, dtype="int16")
                if sr != SR or x.ndim != 1:
                    raise SystemExit(f"{f}: {sr} Hz, {x.ndim} channel dims; expected 16 kHz mono")
                enc.stdin.write(x.tobytes())
                index.append([str(f.relative_to(corpus)), len(x)])
            enc.stdin.close()
            if enc.wait() != 0:
                raise SystemExit(f"{out / name}.opus: ffmpeg failed")
            (out / f"{name}.json").write_text(json.dumps(index))
            hours = sum(n for _, n in index) / SR / 3600
            print(f"{name}: {len(index)} files, {hours:.2f} h, {(out / f'{name}.opus').stat().st_size / 1e6:.1f} MB")


def _unpack_stream(opus: Path, dst: Path) -> str:
    import soundfile as sf

    index = json.loads(opus.with_suffix(".json").read_text())
    x, sr = sf.read(opus, dtype="int16")
    need = sum(n for _, n in index)
    if sr != SR or len(x) < need:
        raise SystemExit(f"{opus}: {sr} Hz, {len(x)} samples; the index needs {need} at {SR} Hz")
    o = 0
    for rel, n in index:
        p = dst / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, x[o:o + n], sr, format="FLAC")
        o += n
    return f"{opus.name}: {len(index)} files, {o / sr / 3600:.2f} h"


def unpack(packs: list[Path], dst: Path, jobs: int) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for src in packs:
        if (src / "text.tar.gz").exists():
            with tarfile.open(src / "text.tar.gz") as t:
                t.extractall(dst, filter="data")
    streams = sorted(p for src in packs for p in src.glob("*.opus"))
    if jobs <= 1:
        for r in map(_unpack_stream, streams, [dst] * len(streams)):
            print(r, flush=True)
        return
    with ProcessPoolExecutor(jobs) as ex:
        for r in ex.map(_unpack_stream, streams, [dst] * len(streams)):
            print(r, flush=True)


def _warm(args: tuple[Path, list]) -> int:
    import torch

    from asr.data.batching import FeatureCache

    torch.set_num_threads(1)
    cache = FeatureCache(args[0])
    for c in args[1]:
        cache.fbank(c)
    return len(args[1])


def warm(manifests: Path, subset: str, speed: bool, jobs: int) -> None:
    from asr.data.prepare import load_cuts, speed_perturb

    cuts = load_cuts(manifests, subset)
    if speed:
        cuts = speed_perturb(cuts)
    cuts = list(cuts.to_eager())
    with ProcessPoolExecutor(jobs) as ex:
        n = sum(ex.map(_warm, [(manifests / "feature_cache", cuts[i::jobs]) for i in range(jobs)]))
    print(f"{subset}: {n} cuts cached in {manifests / 'feature_cache'}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("corpus", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--subsets", nargs="+", default=["train", "dev"])
    p.add_argument("--bitrate", default="16k")
    p.add_argument("--shards", type=int, default=2)
    u = sub.add_parser("unpack")
    u.add_argument("packs", type=Path, nargs="+")
    u.add_argument("--out", type=Path, required=True)
    u.add_argument("--jobs", type=int, default=8)
    w = sub.add_parser("warm")
    w.add_argument("manifests", type=Path)
    w.add_argument("subset")
    w.add_argument("--speed-perturb", action="store_true")
    w.add_argument("--jobs", type=int, default=16)
    a = ap.parse_args(argv)
    if a.cmd == "pack":
        pack(a.corpus, a.out, a.subsets, a.bitrate, a.shards)
    elif a.cmd == "unpack":
        unpack(a.packs, a.out, a.jobs)
    else:
        warm(a.manifests, a.subset, a.speed_perturb, a.jobs)


if __name__ == "__main__":
    main()
