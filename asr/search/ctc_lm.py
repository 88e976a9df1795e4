"""Lexicon-constrained CTC beam search with a word n-gram: torchaudio's ``ctc_decoder`` (flashlight-text,
KenLM inside). Words are limited to the LM directory's vocabulary, spelled in the model's own tokens;
the hypothesis score is ``CTC + lm_weight * LM + word_score * words``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

from asr.errors import UserError
from asr.lm import load_lm_dir
from asr.lm.lexicon import BOUNDARY, model_tokens, write_lexicon
from asr.results import Hypothesis
from asr.tokenizers import load_tokenizer


class LexiconDecoder:
    """One loaded decoder for (LM directory, tokenizer, settings); build it once, call it per batch."""

    def __init__(self, lm_dir: str, tokenizer, beam: int = 50, lm_weight: float = 1.0, word_score: float = 0.0,
                 beam_threshold: float = 25.0):
        try:
            from torchaudio.models.decoder import ctc_decoder
        except ImportError as e:  # flashlight-text missing
            raise UserError(f"the lexicon decoder needs flashlight-text (pip install flashlight-text): {e}") from None

        d = load_lm_dir(lm_dir)
        tokens = model_tokens(tokenizer)
        self._tmp = tempfile.TemporaryDirectory(prefix="asr-lexicon-")
        lex = Path(self._tmp.name) / "lexicon.txt"
        n_ok, _ = write_lexicon(d.words, tokenizer, lex)
        if n_ok == 0:
            raise UserError(f"{d.path}: none of its words can be spelled with this model's tokens")
        sil = BOUNDARY if BOUNDARY in tokens else tokens[0]
        try:
            with _quiet_native_output():  # KenLM prints a progress bar while it reads an ARPA file
                self.decoder = ctc_decoder(lexicon=str(lex), tokens=tokens, lm=str(d.arpa), nbest=1, beam_size=beam,
                                           beam_threshold=beam_threshold, lm_weight=lm_weight, word_score=word_score,
                                           sil_token=sil, blank_token=tokens[0], unk_word="<unk>")
        except RuntimeError as e:
            cause = (str(e).strip().splitlines() or ["unreadable"])[0][:200]
            raise UserError(f"{d.arpa}: the decoder cannot load it ({cause})") from None
        self.tokenizer = tokenizer
        self.sil = tokens.index(sil)

    def __call__(self, log_probs: torch.Tensor, lens: torch.Tensor) -> list[list[Hypothesis]]:
        """``log_probs (B, T, V)``, ``lens (B,)`` -> one hypothesis per utterance: its words re-spelled in the
        model's tokens (word timestamps come from forced alignment like every other method)."""
        out = self.decoder(log_probs.float().cpu().contiguous(), lens.cpu().to(torch.int32))
        hyps = []
        for res in out:
            if not res:
                hyps.append([Hypothesis((), float("-inf"))])
                continue
            best = res[0]
            if getattr(self.tokenizer, "cased", False):  # the spelling the path took keeps the model's casing
                ids = tuple(t for t in best.tokens.tolist() if t not in (0, self.sil))
            else:
                ids = tuple(self.tokenizer.encode(" ".join(w for w in best.words if w not in ("<unk>",))))
            hyps.append([Hypothesis(ids, float(best.score))])
        return hyps


@contextlib.contextmanager
def _quiet_native_output():
    """Silence what native code writes to the process's stdout/stderr (file descriptors 1 and 2)."""

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


@lru_cache(maxsize=4)
def lexicon_decoder(lm_dir: str, tokenizer_path: str, beam: int, lm_weight: float, word_score: float) -> LexiconDecoder:
    """A cached :class:`LexiconDecoder` (loading the ARPA and the lexicon takes seconds)."""

    return LexiconDecoder(lm_dir, load_tokenizer(tokenizer_path), beam, lm_weight, word_score)


__all__ = ["LexiconDecoder", "lexicon_decoder"]
