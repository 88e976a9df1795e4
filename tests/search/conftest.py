"""Shared fixtures of the search tests: a small random model with every head, and a batch of features."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from asr.config import load_config
from asr.models.asr_model import ASRModel

V = 24


@pytest.fixture(scope="module")
def model() -> ASRModel:
    torch.manual_seed(0)
    cfg = load_config("tiny").model
    enc = dataclasses.replace(cfg.encoder, num_layers=2, d_model=64, ffn_dim=128, num_heads=4)
    cfg = dataclasses.replace(cfg, encoder=enc, vocab_size=V,
                              decoder=dataclasses.replace(cfg.decoder, ffn_dim=128, r2l_layers=1),
                              mlm=dataclasses.replace(cfg.mlm, ffn_dim=128), r2l_weight=0.3)
    m = ASRModel(cfg).eval()
    with torch.no_grad():  # sharper distributions than a fresh init, so near-ties are rare
        for lin in (m.ctc.proj, m.decoder.out, m.r2l_decoder.out, m.mlm.out):
            lin.weight.mul_(8.0)
    return m


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(1)
    lens = torch.tensor([230, 160, 97])
    feats = torch.randn(3, 230, 80, generator=g) * 3 + 5
    return feats, lens


