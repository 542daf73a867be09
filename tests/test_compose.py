"""Primitives from different packages compose through the column-quantizer protocol."""

from __future__ import annotations

import torch

from lowbit.cluster import KMeansColumnQuantizer
from lowbit.core.testing import heavy_tailed, random_hessian
from lowbit.recon import hessian_error, quantize_weight, round_to_nearest


def test_gptq_with_kmeans_tables_and_reserved_entries() -> None:
    W, H = heavy_tailed((48, 64), 0).half().float(), random_hessian(64, 1)
    widths = torch.tensor([2, 4] * 32)
    mask = torch.zeros_like(W, dtype=torch.bool)
    mask[W.abs().argmax(0), torch.arange(64)] = True
    r = quantize_weight(W, H, KMeansColumnQuantizer(widths, mask), act_order=True)
    Q_rtn, _ = round_to_nearest(W, KMeansColumnQuantizer(widths, mask))
    assert torch.equal(r.qweight.dequantize(), r.Q)
    assert r.qweight.outliers is not None and r.qweight.outliers.nnz == 64
    assert r.error < hessian_error(W, Q_rtn, H)
