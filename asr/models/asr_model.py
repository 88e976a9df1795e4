"""ASRModel: VTLP (training) -> CMVN -> SpecAugment (training) -> encoder (by name: Conformer or Whisper's) -> CTC,
attention and Mask-CTC heads, each optional (a head the config gives no weight is not built).

It computes losses and exposes the narrow methods search uses (``encode``, ``ctc_log_probs``,
``decoder``/``r2l_decoder`` steps, ``mlm``); it holds no search code. Its special ids (decoder prompt, end, mask,
suppressed tokens) are its tokenizer's (:class:`asr.text.SpecialTokens`).
"""

from __future__ import annotations

import contextlib
import random
import threading

import torch
import torch.nn.functional as F
from torch import nn

from asr.config import ModelConfig
from asr.errors import UserError
from asr.features import FrequencyWarp, GlobalCMVN, SpecAugment
from asr.models.ctc import CTCHead, TiedCTCHead
from asr.models.decoder import TransformerDecoder
from asr.models.interface import build_encoder
from asr.text import SpecialTokens

IGNORE = -1


_NO_INIT = threading.Lock()


@contextlib.contextmanager
def initializers_skipped():
    """Modules built inside keep their parameters as allocated (``torch.nn.init``'s functions do nothing): for a model
    whose every weight is loaded next, or built on the meta device for its shapes (there ``normal_`` runs a Python
    reference that imports ``torch._dynamo``: 1.7 s and 158 MB of RSS for nothing)."""
    init = torch.nn.init
    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))]
    with _NO_INIT:
        saved = {n: getattr(init, n) for n in names}
        try:
            for n in names:
                setattr(init, n, lambda tensor, *args, **kwargs: tensor)
            yield
        finally:
            for n, f in saved.items():
                setattr(init, n, f)


def pad_list(seqs: list[torch.Tensor], value: int) -> torch.Tensor:
    return nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=value)


class ASRModel(nn.Module):
    companion = None  # asr.search.cross_ctc.CTCCompanion when the config names a ctc_companion (set by the loader)

    def __init__(self, cfg: ModelConfig, specials: SpecialTokens | None = None):
        """``specials``: the tokenizer's (``tokenizer.specials``); None: the SentencePiece layout of ``vocab_size``."""
        super().__init__()
        if cfg.vocab_size < 4:
            raise UserError("ModelConfig.vocab_size must be set from the tokenizer")
        self.cfg = cfg
        V, D = cfg.vocab_size, cfg.encoder.d_model
        self.specials = specials or SpecialTokens.sentencepiece(V)
        self.mask_id, self.sos, self.eos = self.specials.mask, self.specials.sos, self.specials.eos
        self.prompt = self.specials.prompt
        self.beam_rules = cfg.beam_rules  # what DecodeOptions(beam_rules="auto") means for this model
        self.register_buffer("cmvn_mean", torch.zeros(cfg.encoder.input_dim))
        self.register_buffer("cmvn_std", torch.ones(cfg.encoder.input_dim))
        self.freq_warp = FrequencyWarp()  # off until the trainer sets max_warp (train.vtlp)
        self.spec_augment = SpecAugment()
        self.encoder = build_encoder(cfg.encoder)
        # (the order modules are made in fixes the random initial weights: the CTC head first, as it always was)
        self.ctc = CTCHead(D, V, cfg.encoder.dropout) if cfg.ctc_weight > 0 and not cfg.ctc_tied else None
        dc, mc = cfg.decoder, cfg.mlm
        ar = dict(activation=dc.activation, positions=dc.positions, max_positions=dc.max_positions,
                  tie_output=dc.tie_output)
        self.decoder = TransformerDecoder(V, D, dc.num_layers, dc.num_heads, dc.ffn_dim, dc.dropout, **ar) \
            if dc.num_layers > 0 and cfg.att_weight > 0 else None
        if (cfg.ctc_tied or mc.tied) and self.decoder is None:
            raise UserError("ctc_tied / mlm.tied need the attention decoder (its token embedding)")
        if cfg.ctc_weight > 0 and cfg.ctc_tied:
            self.ctc = TiedCTCHead(D, self.decoder.embed, cfg.encoder.dropout, cfg.ctc_vocab)
        self.r2l_decoder = TransformerDecoder(V, D, dc.r2l_layers, dc.num_heads, dc.ffn_dim, dc.dropout, **ar) \
            if self.decoder is not None and dc.r2l_layers > 0 and cfg.r2l_weight > 0 else None
        self.mlm = TransformerDecoder(
            V, D, mc.num_layers, mc.num_heads, mc.ffn_dim, mc.dropout, causal=False, activation=mc.activation,
            tie_output=mc.tied, shared_embed=self.decoder.embed if mc.tied else None) \
            if mc.num_layers > 0 and cfg.mlm_weight > 0 else None

    def set_cmvn(self, cmvn: GlobalCMVN) -> None:
        self.cmvn_mean.copy_(cmvn.mean)
        self.cmvn_std.copy_(cmvn.std)

    # ------------------------------------------------------------------ narrow methods for search
    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor, chunk: int = 0,
               left_chunks: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw fbank ``(B, T, F)`` -> encoder output ``(B, T', D)`` and lengths (CMVN applied here)."""
        return self.encoder((feats - self.cmvn_mean) / self.cmvn_std, feat_lens, chunk, left_chunks)

    def ctc_log_probs(self, enc: torch.Tensor) -> torch.Tensor | None:
        """``enc (B, T, D)`` -> ``(B, T, V)``; None for a model without a CTC head."""
        return self.ctc.log_probs(enc) if self.ctc is not None else None

    # ------------------------------------------------------------------ training
    def _sample_chunk(self) -> tuple[int, int]:
        c = self.cfg.encoder
        if not self.training or c.chunk_prob <= 0 or random.random() >= c.chunk_prob:
            return 0, -1
        chunk = random.randint(1, c.max_chunk)
        left = random.randint(1, c.max_left_chunks) if c.max_left_chunks > 0 and random.random() < 0.5 else -1
        return chunk, left

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor, targets: list[list[int]] | list[torch.Tensor],
                chunk: int | None = None, left_chunks: int = -1) -> dict[str, torch.Tensor]:
        """Losses for a batch. ``feats (B, T, F)`` raw fbank, ``feat_lens (B,)``, ``targets``: token ids per
        utterance (no sos/eos). Returns ``loss`` (weighted sum, divided by B) and each part."""
        dev = feats.device
        B = feats.size(0)
        feats = self.freq_warp(feats)  # a no-op in eval mode or with max_warp 0
        x = (feats - self.cmvn_mean) / self.cmvn_std
        if self.training:
            x = self.spec_augment(x, feat_lens)
        if chunk is None:
            chunk, left_chunks = self._sample_chunk()
        c = self.cfg
        tap = c.inter_ctc_layer if 0 < c.inter_ctc_layer < c.encoder.num_layers and c.ctc_weight > 0 else 0
        inter = None
        if tap:
            enc, enc_lens, inter = self.encoder(x, feat_lens, chunk, left_chunks, tap=tap)
        else:
            enc, enc_lens = self.encoder(x, feat_lens, chunk, left_chunks)
        ys = [torch.as_tensor(t, dtype=torch.long, device=dev) for t in targets]
        y_lens = torch.tensor([len(y) for y in ys], dtype=torch.long, device=dev)
        out: dict[str, torch.Tensor] = {}
        loss = enc.new_zeros(())
        if self.ctc is not None:
            out["ctc"] = self.ctc.loss(enc, enc_lens, pad_list(ys, 0), y_lens) / B
            ctc = out["ctc"]
            if inter is not None:  # the same head on a middle layer: a shorter path for the CTC gradient
                out["inter_ctc"] = self.ctc.loss(inter, enc_lens, pad_list(ys, 0), y_lens) / B
                ctc = (1 - c.inter_ctc_weight) * ctc + c.inter_ctc_weight * out["inter_ctc"]
            loss = loss + c.ctc_weight * ctc
        if self.decoder is not None:
            att, acc = self._att_loss(self.decoder, enc, enc_lens, ys)
            out["att"], out["acc"] = att, acc
            if self.r2l_decoder is not None:
                r2l, _ = self._att_loss(self.r2l_decoder, enc, enc_lens, [y.flip(0) for y in ys])
                out["r2l"] = r2l
                att = (1 - c.r2l_weight) * att + c.r2l_weight * r2l
            loss = loss + c.att_weight * att
        if self.mlm is not None:
            out["mlm"] = self._mlm_loss(enc, enc_lens, ys)
            loss = loss + c.mlm_weight * out["mlm"]
        out["loss"] = loss
        return out

    def _att_loss(self, decoder: TransformerDecoder, enc, enc_lens, ys: list[torch.Tensor]):
        """Teacher-forced cross-entropy: the decoder reads ``prompt + y`` and predicts ``y + eos`` (no loss on the
        prompt's own positions)."""
        prompt, eos = ys[0].new_tensor(self.prompt), ys[0].new_tensor([self.eos])
        skip = ys[0].new_full((len(self.prompt) - 1,), IGNORE)
        ys_in = pad_list([torch.cat([prompt, y]) for y in ys], self.eos)
        ys_out = pad_list([torch.cat([skip, y, eos]) for y in ys], IGNORE)
        lens = torch.tensor([len(y) + len(self.prompt) for y in ys], device=enc.device)
        logits = decoder(enc, enc_lens, ys_in, lens)  # (B, L+1, V)
        loss = F.cross_entropy(logits.float().transpose(1, 2), ys_out, ignore_index=IGNORE,
                               label_smoothing=self.cfg.label_smoothing, reduction="sum") / len(ys)
        with torch.no_grad():
            valid = ys_out != IGNORE
            acc = (logits.argmax(-1)[valid] == ys_out[valid]).float().mean()
        return loss, acc

    def _mlm_loss(self, enc, enc_lens, ys: list[torch.Tensor]) -> torch.Tensor:
        return mlm_loss(self.mlm, enc, enc_lens, ys, self.mask_id, self.eos, self.cfg.label_smoothing)


def mlm_loss(mlm: TransformerDecoder, enc: torch.Tensor, enc_lens: torch.Tensor, ys: list[torch.Tensor],
             mask_id: int, pad_id: int, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mask-CTC's loss: mask 1..L random tokens of each target ``ys[b] (L_b,)``, predict them from the rest and the
    audio ``enc (B, T, D)``; summed cross-entropy over the masked positions, divided by B."""
    inputs, labels = [], []
    for y in ys:
        L = len(y)
        y_in, y_out = y.clone(), torch.full_like(y, IGNORE)
        if L > 0:
            n = random.randint(1, L)
            idx = torch.randperm(L, device=y.device)[:n]
            y_in[idx] = mask_id
            y_out[idx] = y[idx]
        inputs.append(y_in)
        labels.append(y_out)
    lens = torch.tensor([max(1, len(y)) for y in ys], device=enc.device)
    y_in = pad_list([y if len(y) else y.new_tensor([mask_id]) for y in inputs], pad_id)
    y_out = pad_list([y if len(y) else y.new_tensor([IGNORE]) for y in labels], IGNORE)
    logits = mlm(enc, enc_lens, y_in, lens)
    return F.cross_entropy(logits.float().transpose(1, 2), y_out, ignore_index=IGNORE,
                           label_smoothing=label_smoothing, reduction="sum") / len(ys)


def count_parameters(model: nn.Module) -> dict[str, int]:
    parts = {"encoder": model.encoder}
    for name in ("ctc", "decoder", "r2l_decoder", "mlm"):
        if getattr(model, name) is not None:
            parts[name] = getattr(model, name)
    out = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
    out["total"] = sum(p.numel() for p in model.parameters())
    return out
