"""Primitives from different packages compose through the column-quantizer protocol."""

from __future__ import annotations

import pytest
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_host_column_loop_on_an_accelerator_matches_cpu() -> None:
    """A host-loop quantizer (k-means fit per column on the CPU) gives the same result for a CUDA
    weight as for a CPU one: the blocks travel to the host and back, the lazy updates stay on CUDA."""
    W, H = heavy_tailed((48, 300), 2), random_hessian(300, 3)
    mask = torch.zeros_like(W, dtype=torch.bool)
    mask[W.abs().argmax(0), torch.arange(300)] = True
    cpu = quantize_weight(W, H, KMeansColumnQuantizer(3, mask), act_order=True)
    gpu = quantize_weight(W.cuda(), H.cuda(), KMeansColumnQuantizer(3, mask), act_order=True)
    assert gpu.Q.device.type == "cuda" and gpu.qweight.codes.device.type == "cuda"
    assert torch.equal(gpu.qweight.dequantize(), gpu.Q)
    agree = (gpu.qweight.codes.cpu() == cpu.qweight.codes).float().mean()
    assert agree > 0.95  # fp32 rounding differences between devices may flip a few ties
    assert abs(gpu.error - cpu.error) <= 0.05 * cpu.error
