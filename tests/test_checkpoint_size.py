"""A checkpoint's size on disk is what the bit accounting says, for every format a recipe produces.

Synthetic layers (heavy-tailed weights, a random positive-definite Hessian) are quantized by each
method's own quantizer, written with :class:`lowbit.core.checkpoint.CheckpointWriter`, and the
layer shards' bytes compared with :func:`lowbit.core.bits.model_bit_report`: within 5% plus the
safetensors headers (fixed metadata, bounded per tensor). Every stored float must be fp16 (what the
accounting charges): a quantizer whose parameters are not fp16-exact would be stored in fp32 and
fail here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from lowbit.core.bits import model_bit_report
from lowbit.core.checkpoint import CheckpointWriter, read_tensors
from lowbit.core.formats import QuantizedWeight

D_OUT, D_IN = 96, 128
HEADER_BYTES_PER_TENSOR = 160  # name, dtype, shape and offsets in the safetensors JSON header


def _weight_and_hessian(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D_OUT, D_IN, generator=g) * 0.02
    W += (torch.rand(D_OUT, D_IN, generator=g) < 0.01) * torch.randn(D_OUT, D_IN, generator=g) * 0.2
    X = torch.randn(4 * D_IN, D_IN, generator=g) * (1 + torch.rand(D_IN, generator=g))
    return W, X.T @ X / X.shape[0]


Quantize = Callable[[torch.Tensor, torch.Tensor], QuantizedWeight]


def _gptq(bits: int, gs: int | None, act_order: bool = False) -> Quantize:
    def run(W: torch.Tensor, H: torch.Tensor) -> QuantizedWeight:
        from lowbit.recon import UniformColumnQuantizer, quantize_weight

        return quantize_weight(W, H, UniformColumnQuantizer(bits, gs), act_order=act_order).qweight
    return run


def _rtn(W: torch.Tensor, H: torch.Tensor) -> QuantizedWeight:
    from lowbit.recon import UniformColumnQuantizer, round_to_nearest

    return round_to_nearest(W, UniformColumnQuantizer(3, 64))[1]


def _claq(W: torch.Tensor, H: torch.Tensor) -> QuantizedWeight:
    from lowbit.cluster import KMeansColumnQuantizer
    from lowbit.recon import quantize_weight
    from lowbit.sparse import reserve_column_outliers

    widths = torch.tensor([2, 3, 4, 3] * (D_IN // 4))
    mask, _ = reserve_column_outliers(W, 0.02)
    return quantize_weight(W, H, KMeansColumnQuantizer(widths, mask, iters=10)).qweight


def _gptqt(W: torch.Tensor, H: torch.Tensor) -> QuantizedWeight:
    from lowbit.cluster.binary_column import BinaryCodeColumnQuantizer
    from lowbit.recon import quantize_weight

    return quantize_weight(W, H, BinaryCodeColumnQuantizer(2, 3, 64), act_order=True).qweight


def _spqr(stat_bits: int | None) -> Quantize:
    def run(W: torch.Tensor, H: torch.Tensor) -> QuantizedWeight:
        from lowbit.recon import quantize_weight
        from lowbit.sparse.spqr import SpQRColumnQuantizer

        return quantize_weight(W, H, SpQRColumnQuantizer(3, 16, stat_bits=stat_bits), act_order=True).qweight
    return run


def _aqlm(W: torch.Tensor, H: torch.Tensor) -> QuantizedWeight:
    from lowbit.cluster import quantize_additive

    return quantize_additive(W, H, n_codebooks=2, bits=6, group_size=8, kmeans_iters=5, codebook_steps=5,
                             max_rounds=1).qweight


def _lrq(W: torch.Tensor, H: torch.Tensor) -> QuantizedWeight:
    from lowbit.recon.lrq import LRQWeight

    q = LRQWeight(W, 3, 4)
    with torch.no_grad():
        q.log_ds.add_(0.0123)  # a trained scale, not the min-max one
    return q.result()


METHODS = {"rtn_w3_g64": _rtn, "gptq_w4_g64": _gptq(4, 64), "gptq_w3_g32_act": _gptq(3, 32, True),
           "gptq_w2_channel": _gptq(2, None), "claq_mixed_reserve": _claq, "gptqt_b2": _gptqt,
           "spqr_w3": _spqr(3), "spqr_w3_fp16_stats": _spqr(None), "aqlm_2x6_g8": _aqlm, "lrq_w3": _lrq}


def _header_bytes(path: Path) -> int:
    with open(path, "rb") as f:
        return 8 + int.from_bytes(f.read(8), "little")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_size_on_disk_matches_the_accounting(method: str, tmp_path: Path) -> None:
    qweights = {f"layers.{i}": METHODS[method](*_weight_and_hessian(i)) for i in range(2)}
    model = nn.Module()
    model.layers = nn.ModuleList([nn.Linear(D_IN, D_OUT, bias=False) for _ in range(2)])
    with CheckpointWriter(tmp_path / "ck") as w:
        w.add_block(qweights)
        dest = w.finish(model)

    layer_names = json.loads((dest / "config.json").read_text())["quantization_config"]["layers"]
    tensors = read_tensors(dest)
    stored = {k: v for k, v in tensors.items() if k.rpartition(".")[0] in layer_names}
    wide = sorted(k for k, v in stored.items() if v.is_floating_point() and v.element_size() > 2)
    assert not wide, f"floats stored wider than the accounting's 16 bits: {wide}"

    shards = sorted(dest.glob("layers-*.safetensors"))
    headers = sum(_header_bytes(p) for p in shards)
    data = sum(p.stat().st_size for p in shards) - headers
    accounted = model_bit_report(qweights.values()).total_bits / 8
    assert abs(data - accounted) <= 0.05 * accounted, (data, accounted)
    assert headers <= HEADER_BYTES_PER_TENSOR * len(stored) + 64
