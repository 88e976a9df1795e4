"""Make an ESPnet model with ESPnet itself, and its reference outputs, for the import parity checks.

Runs under ESPnet's interpreter (ESPnet pins its own torch; see tools/espnet_side_by_side.py for the venv):

    /tmp/espnet_venv/bin/python tools/espnet_fixture.py OUT --kind joint   --shape tiny        # the test fixture
    /tmp/espnet_venv/bin/python tools/espnet_fixture.py OUT --kind maskctc --shape librispeech

``--kind joint``: ESPnet's joint CTC/attention model (``model: espnet``, Transformer decoder); ``--kind maskctc``:
its Mask-CTC model (``model: maskctc``, MLM decoder). ``--shape librispeech``: the network of ESPnet's LibriSpeech
conformer config (egs2/librispeech/asr1/conf/tuning/train_asr_conformer10_hop_length160.yaml: 12 x 512 conformer,
8 heads, 2048 units, kernel 31, macaron, rel_pos latest, swish; 6-layer Transformer decoder; STFT 512 / hop 160
front end, global MVN); ``tiny``: the same options at 2 x 32 (a fixture of a few hundred KB). The vocabulary is a
small unigram SentencePiece model trained here on the text below (ESPnet's token list: ``<blank>``, ``<unk>``,
pieces by frequency, ``<sos/eos>``). Weights are ESPnet's random initialisation; ``--train-steps`` then fits the
model to the fixture's one utterance for that many Adam steps (decoders that end and agree are easier to compare
than random ones). BatchNorm statistics and the MVN statistics are made non-trivial.

Writes into OUT: ``config.yaml`` and ``model.pth`` (as ESPnet's trainer writes them), ``bpe.model``,
``feats_stats.npz``, ``speech.wav`` (a 16-kHz waveform, synthetic), and ``reference.pt`` / ``reference.json``:
the front end's features, CTC log-probabilities, the decoder's teacher-forced log-probabilities (MLM: logits for
a half-masked input), and the text of each decoder through ESPnet's own inference classes (``Speech2Text``:
CTC greedy, attention beam ``ctc_weight 0``, joint ``ctc_weight 0.3``, beam 10; ``asr_inference_maskctc``).
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

TEXT = """HE HOPED THERE WOULD BE STEW FOR DINNER TURNIPS AND CARROTS AND BRUISED POTATOES
STUFF IT INTO YOU HIS BELLY COUNSELLED HIM
AFTER EARLY NIGHTFALL THE YELLOW LAMPS WOULD LIGHT UP HERE AND THERE THE SQUALID QUARTER OF THE BROTHELS
THE MUSIC CAME NEARER AND HE RECALLED THE WORDS THE WORDS OF SHELLEY'S FRAGMENT UPON THE MOON
WE WANT YOU TO HELP US PUBLISH SOME LEADING WORK OF SHAKESPEARE'S
HELLO WORLD THIS IS A TEST OF THE MODEL IMPORT
"""
UTTERANCE = "HELLO WORLD THIS IS A TEST"

SHAPES = {
    "librispeech": dict(output_size=512, attention_heads=8, linear_units=2048, num_blocks=12, cnn_module_kernel=31,
                        dec_blocks=6),
    "tiny": dict(output_size=32, attention_heads=2, linear_units=64, num_blocks=2, cnn_module_kernel=7, dec_blocks=2),
}


def espnet_config(kind: str, shape: str, token_list: list[str], out: Path, hop_length: int = 160,
                  rel_pos_type: str = "latest") -> dict:
    s = SHAPES[shape]
    enc = dict(output_size=s["output_size"], attention_heads=s["attention_heads"], linear_units=s["linear_units"],
               num_blocks=s["num_blocks"], dropout_rate=0.1, positional_dropout_rate=0.1, attention_dropout_rate=0.1,
               input_layer="conv2d", normalize_before=True, macaron_style=True, rel_pos_type=rel_pos_type,
               pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn", activation_type="swish",
               use_cnn_module=True, cnn_module_kernel=s["cnn_module_kernel"])
    dec = dict(attention_heads=s["attention_heads"], linear_units=s["linear_units"], num_blocks=s["dec_blocks"],
               dropout_rate=0.1, positional_dropout_rate=0.1, self_attention_dropout_rate=0.1,
               src_attention_dropout_rate=0.1)
    return {
        "token_list": token_list, "token_type": "bpe", "bpemodel": "bpe.model",
        "input_size": None, "init": None,
        "frontend": "default", "frontend_conf": {"n_fft": 512, "hop_length": hop_length, "fs": "16k"},
        "specaug": None, "specaug_conf": {},
        "normalize": "global_mvn", "normalize_conf": {"stats_file": "feats_stats.npz"},
        "model": "espnet" if kind == "joint" else "maskctc",
        "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False},
        "preencoder": None, "preencoder_conf": {}, "encoder": "conformer", "encoder_conf": enc,
        "postencoder": None, "postencoder_conf": {},
        "decoder": "transformer" if kind == "joint" else "mlm", "decoder_conf": dec,
        "ctc_conf": {"dropout_rate": 0.0, "ctc_type": "builtin", "reduce": True, "ignore_nan_grad": None,
                     "zero_infinity": True},
        "joint_net_conf": None, "use_preprocessor": True, "non_linguistic_symbols": None, "cleaner": None,
        "g2p": None, "speech_volume_normalize": None, "rir_scp": None, "rir_apply_prob": 1.0,
        "noise_scp": None, "noise_apply_prob": 1.0, "noise_db_range": "13_15", "short_noise_thres": 0.5,
        "aux_ctc_tasks": [], "required": ["output_dir", "token_list"], "version": "202511", "distributed": False,
    }


def synthetic_speech(seconds: float = 2.0, seed: int = 0):
    """A deterministic speech-like waveform: harmonic tones whose pitch and loudness move, with noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2
    x = 0.3 * x / np.abs(x).max() + 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def _stub_torchaudio() -> None:
    """ESPnet's task module imports torchaudio for encoders this tool never builds (BEATs); torch 2.14 has no
    torchaudio wheel, so stand in an empty module that fails only if something uses it."""
    import importlib.util
    import sys
    import types

    if importlib.util.find_spec("torchaudio") is not None:
        return

    def missing(name):
        raise AttributeError(f"torchaudio.{name}: torchaudio is not installed in this environment")

    for name in ("torchaudio", "torchaudio.compliance", "torchaudio.compliance.kaldi", "torchaudio.functional",
                 "torchaudio.transforms"):
        mod = types.ModuleType(name)
        mod.__path__ = []
        sys.modules[name] = mod
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, mod)
    for name in list(sys.modules):
        if name.startswith("torchaudio"):
            sys.modules[name].__getattr__ = missing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--kind", choices=("joint", "maskctc"), default="joint")
    ap.add_argument("--shape", choices=tuple(SHAPES), default="tiny")
    ap.add_argument("--vocab", type=int, default=40)
    ap.add_argument("--train-steps", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hop-length", type=int, default=160, help="STFT hop (ESPnet's default is 128; LibriSpeech's 160)")
    ap.add_argument("--rel-pos-type", default="latest", choices=("latest", "legacy"),
                    help="relative positions (ESPnet's conformer defaults to legacy; LibriSpeech's config: latest)")
    a = ap.parse_args()

    import numpy as np
    import sentencepiece as spm
    import soundfile as sf
    import torch
    import yaml

    _stub_torchaudio()
    from espnet2.tasks.asr import ASRTask

    torch.manual_seed(a.seed)
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)  # the config names its files relative to here, as a model-zoo archive's does
    (out / "text.txt").write_text(TEXT)
    spm.SentencePieceTrainer.train(input=str(out / "text.txt"), model_prefix=str(out / "bpe"), vocab_size=a.vocab,
                                   model_type="unigram", character_coverage=1.0, bos_id=-1, eos_id=-1,
                                   normalization_rule_name="identity")
    (out / "text.txt").unlink()
    (out / "bpe.vocab").unlink()
    sp = spm.SentencePieceProcessor(model_file=str(out / "bpe.model"))
    counts = Counter(p for line in TEXT.split("\n") if line for p in sp.encode(line, out_type=str))
    token_list = ["<blank>", "<unk>"] + [p for p, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                                         if p != "<unk>"] + ["<sos/eos>"]

    speech = synthetic_speech()
    sf.write(out / "speech.wav", speech, 16000, subtype="PCM_16")
    speech, _ = sf.read(out / "speech.wav", dtype="float32")  # what a reader of the file gets

    cfg = espnet_config(a.kind, a.shape, token_list, out, a.hop_length, a.rel_pos_type)
    # global MVN statistics: this utterance's own, shifted so that normalisation is not an identity
    from espnet2.asr.frontend.default import DefaultFrontend

    fe = DefaultFrontend(**cfg["frontend_conf"])
    feats, _ = fe(torch.from_numpy(speech).unsqueeze(0), torch.tensor([len(speech)]))
    f = feats[0].double().numpy()
    np.savez(out / "feats_stats.npz", count=np.array(f.shape[0] * 10), sum=(f.sum(0) + 3.0 * f.shape[0]) * 10,
             sum_square=((f * f).sum(0) * 1.5) * 10)
    model = ASRTask.build_model(argparse.Namespace(**cfg))
    with torch.no_grad():
        for m in model.modules():  # BatchNorm statistics as a trained model has them
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x, xl = torch.from_numpy(speech).unsqueeze(0), torch.tensor([len(speech)])
    if a.train_steps:
        ids = [token_list.index(p) for p in sp.encode(UTTERANCE, out_type=str)]
        y, yl = torch.tensor([ids]), torch.tensor([len(ids)])
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        model.train()
        for step in range(a.train_steps):
            loss = model(x, xl, y, yl)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 50 == 0:
                print(f"step {step}: loss {loss.item():.3f}", flush=True)
    model.eval()
    torch.save(model.state_dict(), out / "model.pth")
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    ref, texts = {}, {}
    with torch.no_grad():
        feats, flens = model._extract_feats(x, xl)
        ref["feats"] = feats[0].clone()
        enc, elens = model.encode(x, xl)
        ref["ctc_log_probs"] = model.ctc.log_softmax(enc)[0].clone()
        T = enc.size(1)
        best = ref["ctc_log_probs"].argmax(-1).tolist()
        special = {0, len(token_list) - 1}  # blank, sos/eos: what a tokenizer drops
        greedy = [t for i, t in enumerate(best) if t not in special and (i == 0 or t != best[i - 1])]
        texts["ctc_greedy"] = sp.decode([token_list[i] for i in greedy]) if greedy else ""
        prefix = [token_list.index(p) for p in sp.encode(UTTERANCE, out_type=str)]
        ref["tokens"] = torch.tensor(prefix)
        if a.kind == "joint":
            sos = len(token_list) - 1
            ys = torch.tensor([[sos] + prefix])
            logits, _ = model.decoder(enc, elens, ys, torch.tensor([ys.size(1)]))
            ref["decoder_log_probs"] = logits[0].log_softmax(-1).clone()  # (L + 1, V): after sos and each token
        else:
            mask = len(token_list)  # MaskCTCModel appends <mask>
            ys = torch.tensor([[mask if i % 2 == 0 else t for i, t in enumerate(prefix)]])
            ref["mlm_input"] = ys[0].clone()
            logits, _ = model.decoder(enc, elens, ys, torch.tensor([ys.size(1)]))
            ref["mlm_logits"] = logits[0].clone()  # (L, V + 1)
    torch.save(ref, out / "reference.pt")

    if a.kind == "joint":
        from espnet2.bin.asr_inference import Speech2Text

        for name, w in (("attention_beam", 0.0), ("joint_ctc_attention", 0.3)):
            s2t = Speech2Text(out / "config.yaml", out / "model.pth", beam_size=10, ctc_weight=w, lm_weight=0.0,
                              penalty=0.0, maxlenratio=0.0, minlenratio=0.0, nbest=1)
            texts[name] = s2t(speech)[0][0]
    else:
        from espnet2.bin.asr_inference_maskctc import Speech2Text

        s2t = Speech2Text(out / "config.yaml", out / "model.pth", maskctc_n_iterations=10,
                          maskctc_threshold_probability=0.99)
        texts["mask_ctc"] = s2t(speech)[0][0]
    import espnet

    (out / "reference.json").write_text(json.dumps({
        "espnet": espnet.__version__, "torch": torch.__version__, "kind": a.kind, "shape": a.shape,
        "train_steps": a.train_steps, "encoder_frames": T, "texts": texts,
        "options": {"beam": 10, "joint_ctc_weight": 0.3, "mask_iterations": 10, "mask_threshold": 0.99}},
        indent=1) + "\n")
    print(json.dumps(texts, indent=1))


if __name__ == "__main__":
    main()
