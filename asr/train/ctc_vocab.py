"""The ids a CTC head over part of a large vocabulary covers (:class:`asr.models.ctc.TiedCTCHead`)."""

from __future__ import annotations

import collections

from asr.errors import UserError


def ctc_vocabulary(texts, tokenizer, size: int, corpus=()) -> list[int]:
    """``size`` model ids for a CTC head: the 256 byte-level tokens where the tokenizer has them (any text can be
    spelled), every token of ``texts`` (as the model writes them), then the most frequent tokens of ``corpus``, then
    the lowest ids left. Raises ValueError when the transcripts alone need more."""
    ids = [i for i in range(1, 257) if i < tokenizer.vocab_size and getattr(tokenizer, "num_pieces", 0) > 256]
    seen = set(ids)
    for t in texts:
        seen.update(tokenizer.encode(tokenizer.target_text(t)))
    seen.discard(0)
    if len(seen) > size:
        raise UserError(f"model.ctc_vocab={size} is smaller than the {len(seen)} tokens the transcripts need")
    counts = collections.Counter()
    for s in corpus:
        counts.update(tokenizer.encode(tokenizer.target_text(s)))
    for i, _ in counts.most_common():
        if len(seen) >= size:
            break
        seen.add(i)
    spare = (i for i in range(1, tokenizer.vocab_size) if i not in seen and i not in tokenizer.specials.suppress)
    while len(seen) < size:
        seen.add(next(spare))
    return sorted(seen)


__all__ = ["ctc_vocabulary"]
