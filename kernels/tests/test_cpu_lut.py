"""The CPU lookup-table GEMVs (table, binary, additive) against the torch reference ``x @ W_hat^T``."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.core.formats import QuantizedWeight
from lowbit.kernels import QuantLinear, select
from lowbit.kernels import cpu_lut as lut
from lowbit.kernels.dispatch import REFERENCE
from lowbit.kernels.triton.random_weights import random_additive, random_binary, random_table, random_widths

pytestmark = pytest.mark.skipif(not lut.available(), reason="no C compiler: the CPU kernels are not built")


def _check(qw: QuantizedWeight, kernel: str, seed: int = 0) -> None:
    """Selected for batch 1 on the CPU (reference for batch 2) and equal to the reference within fp32 rounding."""
    ql = QuantLinear.from_qweight(qw)
    assert select(ql.meta, "cpu", 1).name == kernel
    assert select(ql.meta, "cpu", 2) is REFERENCE
    x = torch.randn(1, qw.shape[1], generator=torch.Generator().manual_seed(seed))
    ref = x @ qw.dequantize().T
    torch.testing.assert_close(ql(x), ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()) + 1e-6)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_table_one_width(bits: int) -> None:
    _check(random_table(37, 96, bits, seed=bits, outlier_frac=0.01), "cpu_lut_table")


def test_table_mixed_widths() -> None:
    _check(random_table(40, 128, random_widths(128, (2, 3, 4), seed=1), seed=2, outlier_frac=0.01), "cpu_lut_table")


@pytest.mark.parametrize(("bits", "group_size", "act_order"), [(1, 32, False), (2, 128, True), (3, 64, False),
                                                                (4, 128, True)])
def test_binary(bits: int, group_size: int, act_order: bool) -> None:
    qw = random_binary(33, 256, bits, group_size, seed=bits, act_order=act_order, outlier_frac=0.01)
    _check(qw, "cpu_lut_binary")


@pytest.mark.parametrize(("n_codebooks", "bits"), [(2, 8), (1, 8), (2, 4)])
def test_additive(n_codebooks: int, bits: int) -> None:
    _check(random_additive(35, 128, n_codebooks, bits, seed=bits, outlier_frac=0.01), "cpu_lut_additive")


def test_unsupported_shapes_fall_back() -> None:
    ql = QuantLinear.from_qweight(random_table(8, 48, 4))  # d_in not a multiple of 32
    assert select(ql.meta, "cpu", 1) is REFERENCE


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 2**20), st.integers(1, 40), st.integers(1, 4), st.sampled_from(["table", "binary", "additive"]))
def test_lut_kernels_match_reference(seed: int, d_out: int, k: int, fmt: str) -> None:
    d_in = 32 * k
    if fmt == "table":
        qw = random_table(d_out, d_in, random_widths(d_in, (1, 2, 3, 4), seed=seed), seed=seed, n_outliers=seed % 3)
    elif fmt == "binary":
        qw = random_binary(d_out, d_in, 1 + seed % 4, 8 * (1 + seed % 4) if d_in % (8 * (1 + seed % 4)) == 0 else 32,
                           seed=seed, act_order=bool(seed % 2))
    else:
        qw = random_additive(d_out, d_in, 1 + seed % 2, 8 if seed % 3 else 5, seed=seed, n_outliers=seed % 3)
    _check(qw, f"cpu_lut_{fmt}", seed)


def test_loading_the_cpu_library_keeps_subnormal_floats() -> None:
    """The compiled CPU kernels must not change the process's floating-point state (a library built
    with -ffast-math turns on flush-to-zero for everyone when it is loaded)."""
    from lowbit.kernels import cpu

    cpu.available()  # builds and loads the library when a compiler exists
    tiny = torch.tensor(1e-40, dtype=torch.float32)
    assert tiny.item() != 0.0 and float(tiny * 1.0) != 0.0
