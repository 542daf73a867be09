"""CMPQ's layer quantizer (recipes/cmpq.py) composing alloc, cluster and sparse: the total budget
counted by bit_report is met, outliers are exact, more bits never hurt much, bad budgets are errors."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.core.bits import bit_report
from lowbit.core.testing import heavy_tailed


@pytest.fixture(scope="module")
def cmpq(recipe: Callable[[str], ModuleType]) -> ModuleType:
    return recipe("cmpq")


def _scores(d_in: int, seed: int) -> torch.Tensor:
    """Activation norms with a few dominant channels, as in LLMs."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(d_in, generator=g) * (1 + 20 * (torch.rand(d_in, generator=g) < 0.02))


@settings(max_examples=30, deadline=None)
@given(d_out=st.integers(128, 640), d_in=st.integers(256, 640), budget=st.floats(2.0, 4.0),
       act=st.booleans(), quant=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_total_budget_is_met_within_a_hundredth(cmpq, d_out, d_in, budget, act, quant, seed) -> None:
    """For any budget in [2, 4] and shape, bit_report's total (codes + tables + outlier values and
    indices) lies in [B - 0.01, B]; the outliers are reproduced exactly by dequantize()."""
    W = heavy_tailed((d_out, d_in), seed)
    cfg = cmpq.CMPQConfig(bits=budget, act_outliers=act, quant_outliers=quant)
    cfg.validate()
    qw = cmpq.quantize_layer(W, _scores(d_in, seed), cfg)
    total = bit_report(qw).bits_per_weight
    assert budget - 0.01 <= total <= budget + 1e-9
    n_ch, n_q = qw.meta["act_outlier_channels"], qw.meta["quant_outliers"]
    assert (n_ch > 0) == (act and round(cfg.act_frac * d_in) > 0) and (n_q > 0) == quant
    if qw.outliers is not None:
        assert qw.outliers.nnz == n_ch * d_out + n_q
        rows, cols = qw.outliers.rows, qw.outliers.cols
        assert torch.equal(qw.dequantize()[rows, cols], W[rows, cols].half().float())


def test_layer_error_falls_with_the_budget(cmpq) -> None:
    W = heavy_tailed((256, 512), 1)
    s = _scores(512, 1)
    errs = []
    for b in (2.0, 2.5, 3.0, 3.5, 4.0):
        D = cmpq.quantize_layer(W, s, cmpq.CMPQConfig(bits=b)).dequantize() - W
        errs.append(float((D.pow(2) * s.pow(2)).sum()))  # ||(W - W_hat) X^T||^2 for diagonal X^T X
    assert all(e1 > e2 for e1, e2 in zip(errs, errs[1:], strict=False))


def test_tables_are_kmeans_of_each_channel(cmpq) -> None:
    W = heavy_tailed((300, 64), 2)
    widths = torch.tensor([1, 2, 3, 4] * 16)
    qw = cmpq.kmeans_tables(W, widths, seed=0)
    assert qw.tables is not None and qw.tables.dtype == torch.float16
    D = qw.dequantize()
    for j in range(64):  # each weight coded to its nearest stored entry, at most 2^b entries per channel
        t = qw.tables[j, : 2 ** int(widths[j])].float()
        assert torch.equal(D[:, j], t[(W[:, j, None] - t[None]).abs().argmin(1)])
        assert D[:, j].unique().numel() <= 2 ** int(widths[j])


def test_activation_outlier_channels_are_the_top_scores(cmpq) -> None:
    W = heavy_tailed((128, 400), 3)
    s = _scores(400, 3)
    qw = cmpq.quantize_layer(W, s, cmpq.CMPQConfig(bits=3.0, act_frac=0.01, quant_outliers=False))
    assert qw.outliers is not None and isinstance(qw.bits, torch.Tensor)
    top = s.argsort(descending=True)[:4]
    assert sorted(qw.outliers.cols.unique().tolist()) == sorted(top.tolist())
    assert (qw.bits[top] == 1).all()  # pinned to the lowest width: their codes are overwritten


@pytest.mark.parametrize("kwargs, message", [
    ({"bits": 1.9}, "must lie in [2, 4]"),
    ({"bits": 4.5}, "must lie in [2, 4]"),
    ({"bits": 2.0, "act_frac": 0.1}, "infeasible"),
    ({"quant_frac": 1.0}, "--quant-frac"),
    ({"group_size": 64}, "--group-size"),
    ({"min_width": 3, "max_width": 3}, "--min-width"),
    ({"statistic": "l1"}, "--statistic"),
])
def test_bad_configs_are_rejected(cmpq, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        cmpq.CMPQConfig(**kwargs).validate()


def test_a_budget_some_layer_cannot_meet_is_rejected(cmpq) -> None:
    """2.05 total bits with widths 2..4 and no outliers passes the config check, but a 192-row
    layer's 2-bit fp16 tables alone cost 64 * 16 / (192 * 64) = 0.33 bits per weight."""
    cfg = cmpq.CMPQConfig(bits=2.05, min_width=2, act_outliers=False, quant_outliers=False)
    cfg.validate()
    with pytest.raises(ValueError, match="infeasible"):
        cmpq.quantize_layer(heavy_tailed((192, 576), 0), _scores(576, 0), cfg)
