"""Triton kernels against the torch reference (``x @ qw.dequantize().T``), every format and path.

Without CUDA (or with ``TRITON_INTERPRET=1``) the kernels run on CPU tensors through Triton's
interpreter on small shapes; on a GPU machine the same tests run the compiled kernels on CUDA tensors,
plus the kernel-table tests marked ``cuda``. ``pytest kernels/tests -k triton``.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1" or not torch.cuda.is_available()
if INTERPRET:
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported: @triton.jit reads it
os.environ.setdefault("LOWBIT_TRITON_TUNE", "0")  # first configuration: the tests compile few variants
pytest.importorskip("triton")

from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lowbit.core.formats import QuantizedWeight, binary_code_values  # noqa: E402
from lowbit.kernels import QuantLinear, select  # noqa: E402
from lowbit.kernels.triton import additive, column_tables, common, timing, uniform  # noqa: E402
from lowbit.kernels.triton.common import Config  # noqa: E402
from lowbit.kernels.triton.random_weights import (  # noqa: E402
    random_additive,
    random_binary,
    random_table,
    random_uniform,
    random_widths,
)

DEVICE = "cpu" if INTERPRET else "cuda"
cuda = pytest.mark.skipif(INTERPRET, reason="needs CUDA (compiled kernels)")


def check(qw: QuantizedWeight, y: torch.Tensor, x: torch.Tensor) -> None:
    """``y`` equals ``x @ W_hat^T`` (fp64 reference) up to fp16 rounding of the tables/scales and output."""
    ref = x.double() @ qw.dequantize(torch.float64).to(x.device).T
    scale = float(ref.abs().max()) + 1e-6
    assert y.shape == ref.shape and y.dtype == x.dtype
    err = float((y.double() - ref).abs().max()) / scale
    assert err < 4e-3, f"relative error {err:.2e}"


def xs(m: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, k, generator=g).half().to(DEVICE)


# GEMV (one block per iteration, and several with masked tail blocks; loads one iteration ahead with 2
# stages, not with 1) and tl.dot (batches) paths; split K, into a zero-filled output and with tickets
PATHS = [(1, Config(32, 16)), (1, Config(8, 128)), (1, Config(16, 64, 4, 1)), (5, Config(32, 32)),
         (19, Config(64, 64))]
SPLIT_PATHS = [(1, Config(16, 32, 2, 2, 3)), (1, Config(32, 16, 4, 2, 2)), (6, Config(16, 32, 4, 2, 4)),
               (1, Config(16, 32, 2, 2, 3, tickets=True)), (6, Config(16, 32, 4, 2, 4, tickets=True))]


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("act_order", [False, True])
def test_uniform_paths(bits: int, act_order: bool) -> None:
    qw = random_uniform(40, 256, bits, 64, seed=bits, device=DEVICE, act_order=act_order, n_outliers=9)
    state = uniform.prepare(qw)
    for m, config in PATHS + SPLIT_PATHS:
        x = xs(m, 256, m)
        check(qw, uniform.run(state, x, config), x)


@pytest.mark.parametrize("bits", [2, 3])
def test_uniform_batch_one_block_an_iteration(bits: int) -> None:
    """Paired codes give a 2- or 3-bit pair step 16 inputs of one 128-input block: the batch path's
    ``tl.dot`` may then take one block an iteration (the H100's batch-16 choice, 8 words)."""
    qw = random_uniform(40, 384, bits, 128, seed=bits, device=DEVICE, n_outliers=6)
    config = Config(64, 8, 4, 3, 2)
    assert common.blocks_per_iter(config, common.PER[bits], 128, 3, 17) == 1
    x = xs(17, 384, bits)
    check(qw, uniform.run(uniform.prepare(qw), x, config), x)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_uniform_gemv_tma(bits: int) -> None:
    """The GEMV with its words in TMA boxes (``Config.tma``): rows past the end of the layer (40 rows, tiles
    of 16), blocks past the end of K (3 blocks of 128, boxes of 2 or 4), split K, act-order and outliers;
    both planes of 3-bit codes come in boxes. The interpreter runs the descriptor loads."""
    qw = random_uniform(40, 384, bits, 128, seed=bits, device=DEVICE, act_order=True, n_outliers=7)
    state = uniform.prepare(qw)
    x = xs(1, 384, bits)
    for config in (Config(16, 128, 4, 3, tma=True), Config(8, 64, 4, 2, 2, tma=True),
                   Config(16, 32, 2, 4, 1, tma=True)):
        assert uniform.word_tma(state, config, x) == (INTERPRET or torch.cuda.get_device_capability()[0] >= 9)
        check(qw, uniform.run(state, x, config), x)
    xb = xs(17, 384, bits)
    check(qw, uniform.run(state, xb, Config(64, 16, 4, 3, 2, tma=True)), xb)  # a batch's tl.dot tiles from boxes


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([1, 2, 3, 4]), st.sampled_from([8, 16, 32, 64]), st.sampled_from([2, 3, 4]),
       st.sampled_from([16, 32, 64]), st.integers(64, 256))
def test_batch_blocks_fit_shared_memory(bits: int, words: int, stages: int, bm: int, shared_kib: int) -> None:
    """A batch's blocks an iteration are halved until the pipelined activation tiles fit the shared memory
    given (less 32 KiB), never below ``tl.dot``'s 16 inputs a pair step; the GEMV's are not limited. At
    1 bit, (64, 32, 4, 3, 1) on 64 rows asked the H100 for 410,624 bytes of its 232,448."""
    config, per, shared = Config(64, words, 4, stages, 1), common.PER[bits], shared_kib * 1024
    free = common.blocks_per_iter(config, per, 128, 64, bm)
    gpi = common.blocks_per_iter(config, per, 128, 64, bm, shared=shared)
    least = -(-16 // (128 // per * 2))
    assert least <= gpi <= free and gpi * 2 * (128 // per) >= 16  # inputs of a pair step
    assert gpi == least or stages * gpi * 128 * bm * 2 <= shared - 32768
    assert gpi == free or stages * 2 * gpi * 128 * bm * 2 > shared - 32768  # halved only while too large
    assert common.blocks_per_iter(config, per, 128, 64, 1, shared=shared) == max(1, words * per // 128)


@settings(max_examples=8, deadline=None)
@given(st.sampled_from([2, 3, 4]), st.sampled_from([32, 64, 128]), st.integers(1, 70), st.integers(1, 3),
       st.integers(1, 20), st.integers(0, 12), st.integers(0, 2**20))
def test_uniform_property(bits: int, gs: int, d_out: int, n_groups: int, m: int, n_out: int, seed: int) -> None:
    """Any width, group size, shape and batch through the default (tuned; first on CPU) configuration."""
    qw = random_uniform(d_out, gs * n_groups, bits, gs, seed=seed, device=DEVICE, n_outliers=n_out)
    x = xs(m, gs * n_groups, seed)
    check(qw, uniform.run(uniform.prepare(qw), x), x)



@settings(max_examples=20, deadline=None)
@given(st.integers(1, 70), st.integers(0, 300), st.integers(0, 2**20))
def test_tile_max(n_rows: int, nnz: int, seed: int) -> None:
    """``Outliers.tile_max`` (which sizes the walk's chunks) is the most entries of any tile of 1, 2, 4 ..
    128 consecutive rows, counted by brute force."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, n_rows, (nnz,), generator=g)
    o = common.outliers_csr(rows, torch.randint(0, 300, (nnz,), generator=g), torch.randn(nnz, generator=g), n_rows)
    for bn, most in o.tile_max.items():
        counts = torch.bincount(rows // bn, minlength=(n_rows + bn - 1) // bn)
        assert most == int(counts.max())
        assert common.out_chunk(bn, o) >= min(most, common.out_chunk(bn, None))


def test_outlier_walk_several_chunks() -> None:
    """More outliers per row tile than one chunk (``common.out_chunk``) holds: the walk continues after
    the chunk loaded before the main loop (GEMV, batches, split K, whose programs take the chunks in
    turn)."""
    qw = random_uniform(32, 256, 4, 64, seed=5, device=DEVICE, n_outliers=1500)
    state = uniform.prepare(qw)
    assert int(state.outliers.indptr[16]) > common.out_chunk(16, state.outliers)
    assert uniform.outlier_programs(state, Config(16, 32), 16) > 1  # batches: walker programs take turns
    for m, config in [(1, Config(16, 32)), (1, Config(16, 32, 2, 1)), (3, Config(16, 32)),
                      (1, Config(16, 16, 2, 2, 2)), (3, Config(16, 16, 4, 2, 3)), (1, Config(64, 16, 2, 2, 2))]:
        x = xs(m, 256, m)
        check(qw, uniform.run(state, x, config), x)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 200), st.integers(0, 600), st.integers(1, 300), st.integers(0, 2**20))
def test_outliers_by_column(n_rows: int, nnz: int, n_cols: int, seed: int) -> None:
    """``Outliers.by_col`` holds the entries as given, in column order inside tiles of ``COL_TILE`` rows, and
    the row pointers at multiples of ``COL_TILE`` bound each tile's entries in both orders."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n_rows * n_cols, generator=g)[:nnz]
    rows, cols, delta = idx // n_cols, idx % n_cols, torch.randn(idx.numel(), generator=g)
    o = common.outliers_csr(rows, cols, delta, n_rows, by_col=True)
    r, c, d = (o.by_col[0].long() & 0xFFFF, o.by_col[1].long() & 0xFFFF, o.by_col[2])
    assert sorted(zip(r.tolist(), c.tolist(), d.tolist(), strict=True)) == sorted(
        zip(rows.tolist(), cols.tolist(), delta.half().tolist(), strict=True))
    for t0 in range(0, n_rows, common.COL_TILE):
        a, b = int(o.indptr[t0]), int(o.indptr[min(t0 + common.COL_TILE, n_rows)])
        for order in (r, o.rows.long() & 0xFFFF):
            assert bool(((order[a:b] >= t0) & (order[a:b] < t0 + common.COL_TILE)).all())
        assert bool((c[a + 1:b] >= c[a:b - 1]).all())
    assert common.outlier_args(o, delta, 64, 16)[1] is o.by_col[0]  # batch tiles of a multiple of COL_TILE rows
    assert common.outlier_args(o, delta, 32, 16)[1] is o.rows and common.outlier_args(o, delta, 64, 1)[1] is o.rows


def test_outliers_by_column_walks() -> None:
    """Batch tiles of 64 and 128 rows walk the column-ordered entries (three tiles of ``COL_TILE`` rows, several
    chunks each), in outlier programs and with split K; a GEMV of 64-row tiles walks them in row order (its
    prefix sums need it)."""
    qw = random_uniform(160, 256, 4, 64, seed=6, device=DEVICE, n_outliers=3000)
    state = uniform.prepare(qw)
    assert state.outliers.by_col is not None and uniform.outlier_programs(state, Config(64, 16), 16) > 1
    for m, config in [(3, Config(64, 16, 4, 2, 1)), (5, Config(128, 16, 4, 2, 2)), (1, Config(64, 16, 2, 2, 2))]:
        x = xs(m, 256, m)
        check(qw, uniform.run(state, x, config), x)


def test_uniform_second_order() -> None:
    """SpQR: group scales themselves quantized (dequantized once at prepare)."""
    qw = random_uniform(32, 128, 3, 32, seed=1, device=DEVICE, n_outliers=5)
    assert qw.scales is not None
    stats = random_uniform(4, 32, 3, 16, seed=2, device=DEVICE)  # (n_groups, d_out) statistics
    qw = dataclasses.replace(qw, scales=None, second_order={"scales": stats})
    x = xs(3, 128, 0)
    check(qw, uniform.run(uniform.prepare(qw), x, Config(32, 64)), x)


# column tables: GEMV over one and several iterations (the last one masked), split K; tl.dot batches; the
# segments of mixed widths and split K with tickets
TABLE_PATHS = [(1, Config(32, 64, 4, 1, 1)), (1, Config(32, 128, 4, 1, 2)), (1, Config(32, 512, 8, 1, 1)),
               (5, Config(32, 32, 4, 1, 1)), (19, Config(32, 64, 4, 1, 2)), (1, Config(32, 64, 4, 1, 1, tickets=True)),
               (19, Config(32, 64, 4, 1, 2, tickets=True))]


@pytest.mark.parametrize("widths", [4, 3, 2, 1, (1, 2, 3, 4), (2, 4)])
def test_table_paths(widths: int | tuple[int, ...]) -> None:
    bits = widths if isinstance(widths, int) else random_widths(160 if len(widths) > 2 else 256, widths, 3, DEVICE)
    d_in = 256 if isinstance(widths, int) else bits.numel()
    qw = random_table(36, d_in, bits, seed=4, device=DEVICE, n_outliers=7)
    state = column_tables.prepare(qw)
    for m, config in TABLE_PATHS:
        x = xs(m, d_in, m)
        check(qw, column_tables.run(state, x, config), x)


@pytest.mark.parametrize("widths", [4, (2, 3, 4)])
def test_table_tma(widths: int | tuple[int, ...]) -> None:
    """GEMVs whose 4-bit segments take their words in TMA boxes (``Config.tma``): a partial row tile (36 rows),
    boxes past the segment's columns (and past its end: the last tile), split K, mixed widths whose other
    segments keep the register loads; a batch at a ``tma`` configuration keeps the register loads."""
    bits = widths if isinstance(widths, int) else random_widths(200, widths, 5, DEVICE)
    d_in = 256 if isinstance(widths, int) else bits.numel()
    qw = random_table(36, d_in, bits, seed=6, device=DEVICE, n_outliers=5)
    state = column_tables.prepare(qw)
    for m, config in [(1, Config(32, 128, 4, 3, 1, tma=True)), (1, Config(32, 64, 4, 2, 2, tma=True)),
                      (5, Config(32, 32, 4, 3, 2, tma=True))]:  # (a batch: register loads)
        x = xs(m, d_in, m)
        tma = m == 1 and (INTERPRET or torch.cuda.get_device_capability()[0] >= 9)
        assert column_tables.word_tma(config, x) == tma
        check(qw, column_tables.run(state, x, config), x)


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_table_edges(bits: int) -> None:
    """Single widths of 1-3 bits on 40 inputs (padded to 64, the padding masked) and 20 rows (a partial
    row tile) with tables of 6 entries, codes below 6: more entries than 1- and 2-bit codes select (cut
    to ``2^b``), fewer than 3-bit ones may (zero-padded)."""
    qw = random_table(20, 40, bits, seed=bits, device=DEVICE, n_outliers=4)
    qw = dataclasses.replace(qw, codes=qw.codes.clamp(max=5), tables=qw.tables[:, :6].contiguous())
    state = column_tables.prepare(qw)
    for m, config in [(1, Config(32, 32, 4, 1, 1)), (1, Config(32, 16, 2, 1, 2)), (5, Config(32, 32, 4, 1, 1))]:
        x = xs(m, 40, m)
        check(qw, column_tables.run(state, x, config), x)


@pytest.mark.parametrize(("d_in", "gs"), [(384, 128), (96, 32)])
def test_binary_edges(d_in: int, gs: int) -> None:
    """Act-order binary codes with outliers, groups of 128 over 3 blocks and of 32 inputs."""
    qw = random_binary(24, d_in, 3, gs, seed=gs, device=DEVICE, act_order=True, outlier_frac=0.02)
    state = uniform.prepare_binary(qw)
    for m, config in [(1, Config(8, 128)), (1, Config(16, 32, 4, 1)), (5, Config(32, 32))] + SPLIT_PATHS:
        x = xs(m, d_in, m)
        check(qw, uniform.run(state, x, config), x)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2**20))
def test_binary_steps(bits: int, seed: int) -> None:
    """Code ``j``'s value is the first step plus the steps of its set bits (values affine in the bits)."""
    g = torch.Generator().manual_seed(seed)
    alphas, offsets = torch.rand(3, 5, bits, generator=g), torch.randn(3, 5, generator=g)
    steps = uniform.binary_steps(alphas, offsets)
    j = torch.arange(1 << bits)
    bits_of_j = ((j[:, None] >> torch.arange(bits)) & 1).float()  # (2^b, b), least significant first
    values = steps[..., :1] + steps[..., 1:] @ bits_of_j.T
    torch.testing.assert_close(values, binary_code_values(alphas, offsets), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("act_order", [False, True])
def test_binary_paths(bits: int, act_order: bool) -> None:
    qw = random_binary(40, 256, bits, 64, seed=bits, device=DEVICE, act_order=act_order)
    state = uniform.prepare_binary(qw)
    for m, config in PATHS + SPLIT_PATHS:
        x = xs(m, 256, m)
        check(qw, uniform.run(state, x, config), x)


@pytest.mark.parametrize("m_b", [(2, 8), (1, 16), (1, 8), (3, 4)])
def test_additive_paths(m_b: tuple[int, int]) -> None:
    qw = random_additive(40, 200, *m_b, seed=5, device=DEVICE, n_outliers=6)
    paths = [(1, Config(32, 16)), (1, Config(8, 128)), (1, Config(16, 64, 4, 1)), (4, Config(32, 32)),
             (17, Config(64, 64)), (1, Config(256, 16, 4, 2, 8)), (1, Config(128, 8, 4, 1, 3)),
             (1, Config(256, 16, 4, 2, 8, tickets=True))] + SPLIT_PATHS
    for rows in (False, True) if m_b[1] <= 8 else (False,):  # both layouts; rows contiguous: the table GEMV
        state = additive.prepare(qw, table=rows)
        assert state.table == rows and (state.codes.stride(0) == 1) == rows
        for m, config in paths:
            x = xs(m, 200, m)
            check(qw, additive.run(state, x, config), x)


@pytest.mark.parametrize("m_b", [(2, 8), (1, 8), (3, 4)])
def test_additive_dot_table(m_b: tuple[int, int]) -> None:
    """``LUT[j, i 2^B + c] = <x[8j:8j+8], C_i[c]>`` for every group, codebook and codeword."""
    qw = random_additive(8, 72, *m_b, seed=2, device=DEVICE)
    state = additive.prepare(qw)
    x = xs(1, 72, 4)
    ref = torch.einsum("jt,ict->jic", x.float().reshape(9, 8), qw.codebooks.float().to(x.device)).reshape(9, -1)
    lut = additive.dot_table(state, x)
    torch.testing.assert_close(lut[:9], ref, rtol=1e-5, atol=1e-5)
    assert (lut[9] == 0).all()


def test_additive_table_zeroes_the_output_and_checks_inputs() -> None:
    """The table kernel zeroes the split-K output it is given (whatever it held); bad shapes and formats raise."""
    qw = random_additive(40, 72, 2, 8, seed=3, device=DEVICE)
    state = additive.prepare(qw)
    y = torch.full((1, 40), float("nan"), dtype=torch.float16, device=DEVICE)
    additive.dot_table(state, xs(1, 72, 1), y)
    assert (y == 0).all()
    with pytest.raises(ValueError, match="one row"):
        additive.dot_table(state, xs(2, 72, 1))
    with pytest.raises(ValueError, match="inputs"):
        additive.run(state, xs(1, 64, 1))
    with pytest.raises(ValueError, match="M x B <= 16"):
        additive.prepare(random_additive(8, 72, 3, 8, seed=3, device=DEVICE))
    with pytest.raises(ValueError, match="at most 8 bits"):
        additive.prepare(random_additive(8, 72, 1, 16, seed=3, device=DEVICE), table=True)
    assert not state.table and additive.prepare(qw, table=True).table  # small layers keep v9's layout


def test_additive_bf16_paths() -> None:
    """bf16 activations through the table GEMV (with and without split K), the codeword GEMV (1x16) and,
    compiled only, the batch path (Triton 3.9's interpreter returns garbage for a bf16 ``tl.dot``)."""
    for m_b, m, config in [((2, 8), 1, Config(256, 16, 4, 2, 8)), ((2, 8), 1, Config(128, 16, 4, 1, 1)),
                           ((1, 16), 1, Config(16, 64, 4, 2, 2)), ((2, 8), 3, Config(32, 32, 4, 2, 2))]:
        if m > 1 and INTERPRET:
            continue
        qw = random_additive(48, 96, *m_b, seed=6, device=DEVICE, n_outliers=4)
        x = xs(m, 96, m).to(torch.bfloat16)
        y = additive.run(additive.prepare(qw, table=m_b[1] <= 8), x, config)
        assert y.dtype == torch.bfloat16
        ref = x.double() @ qw.dequantize(torch.float64).to(x.device).T
        assert float((y.double() - ref).abs().max() / ref.abs().max()) < 1e-2


def test_additive_large_values_stay_finite() -> None:
    """Codewords of 30 against activations of 200: each group's dot product (96,000) is beyond fp16, the
    scaled result (about 7,700) is not; the kernel must keep products and group sums in fp32."""
    qw = random_additive(16, 64, 2, 8, seed=1, device=DEVICE)
    qw = dataclasses.replace(qw, codebooks=torch.full_like(qw.codebooks, 30.0),
                             scales=torch.full_like(qw.scales, 0.01))
    state = additive.prepare(qw)
    x = torch.full((1, 64), 200.0, dtype=torch.float16, device=DEVICE)
    for config in (Config(16, 16), Config(8, 16, 4, 2, 2)):
        y = additive.run(state, x, config)
        assert torch.isfinite(y).all()
        check(qw, y, x)


@settings(max_examples=6, deadline=None)
@given(st.sampled_from(["table", "binary", "additive"]), st.integers(1, 50), st.integers(1, 4),
       st.integers(1, 20), st.integers(0, 2**20))
def test_lookup_property(fmt: str, d_out: int, k32: int, m: int, seed: int) -> None:
    d_in = 32 * k32
    if fmt == "table":
        qw = random_table(d_out, d_in, random_widths(d_in, (2, 3, 4), seed, DEVICE), seed, DEVICE, n_outliers=3)
        state = column_tables.prepare(qw)
    elif fmt == "binary":
        qw = random_binary(d_out, d_in, 1 + seed % 4, 32, seed, DEVICE)
        state = uniform.prepare_binary(qw)
    else:
        qw = random_additive(d_out, d_in, *((2, 8), (1, 16))[seed % 2], seed=seed, device=DEVICE, n_outliers=2)
        state = additive.prepare(qw)
    x = xs(m, d_in, seed)
    run = {"table": column_tables.run, "binary": uniform.run, "additive": additive.run}[fmt]
    check(qw, run(state, x), x)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([1, 2, 3, 4]), st.integers(1, 9), st.sampled_from([32, 64, 128]), st.integers(1, 3),
       st.integers(0, 2**20))
def test_pack_codes_round_trip(bits: int, n: int, kb: int, n_blocks: int, seed: int) -> None:
    """Word ``j`` of block ``b`` holds at bit ``i w`` of each plane input ``b KB + 2 WB (i mod PER / 2) + 2 j
    + i div PER / 2``; each row's words padded to a multiple of 16."""
    g = torch.Generator().manual_seed(seed)
    k = kb * n_blocks
    codes = torch.randint(0, 1 << bits, (n, k), generator=g)
    per = common.PER[bits]
    wb = kb // per
    i, j = torch.arange(per)[:, None], torch.arange(wb)[None, :]
    within = 2 * wb * (i % (per // 2)) + 2 * j + i // (per // 2)  # (PER, WB)
    inputs = (kb * torch.arange(n_blocks)[:, None, None] + within).reshape(k)  # of [b, i, j]
    assert sorted(inputs.tolist()) == list(range(k))
    back, shift = torch.zeros_like(codes), 0
    for w, plane in zip(common.PLANES[bits], common.pack_codes(codes, bits, kb), strict=True):
        words = -(-k // per // 16) * 16  # rows padded with zero words to a multiple of 16
        assert plane.shape == (n, words) and plane.dtype == (torch.int32 if per * w == 32 else torch.int16)
        assert not plane[:, k // per:].any()
        v = plane[:, : k // per].long() & ((1 << (per * w)) - 1)
        part = (v.reshape(n, n_blocks, 1, wb) >> (w * torch.arange(per))[None, None, :, None]) & ((1 << w) - 1)
        back[:, inputs] |= part.reshape(n, k) << shift
        shift += w
    assert torch.equal(back, codes)


@settings(max_examples=8, deadline=None)
@given(st.sampled_from([(1, Config(16, 32, 2, 2, 3)), (1, Config(32, 16, 4, 2, 2)), (6, Config(16, 32, 4, 2, 4))]),
       st.sampled_from([0, 0xFFFE, 0xFFFF]) | st.integers(0, 0xFFFF), st.integers(1, 3))
@example((6, Config(16, 32, 4, 2, 4)), 0xFFFF, 1)  # the generation wraps: tried first, every run
def test_split_k_tickets(path: tuple[int, Config], generation: int, calls: int) -> None:
    """Split-K programs with tickets (``Config.tickets``) write an output that held anything (NaN here):
    per tile the first to arrive stores, the others add after it (``common.store_y``). The ticket words
    come back with no program counted and the generation advanced by one a launch (modulo 2^16, from any
    generation), the mark the last launch released equal to it; a layer of 40 rows and 256 inputs, 4-bit,
    outliers (walked by programs of their own in batches)."""
    m, config = path
    config = dataclasses.replace(config, tickets=True)
    qw = random_uniform(40, 256, 4, 64, seed=calls, device=DEVICE, n_outliers=9)
    state, x = uniform.prepare(qw), xs(m, 256, generation)
    tiles = -(-40 // config.block_n) * -(-m // common.block_m(m))
    words = torch.zeros(2 * tiles, dtype=torch.int32, device=DEVICE)
    words[0::2], words[1::2] = (generation << 16) - (generation >> 15 << 32), generation  # as int32
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(uniform, "output", lambda m, n, grid, like, c: (torch.full(
            (m, n), float("nan"), dtype=like.dtype, device=like.device), common.tickets(grid, like)))
        mp.setitem(common._TICKETS, x.device, [words])
        for _ in range(calls):
            check(qw, uniform.run(state, x, config), x)
    after = (generation + calls) & 0xFFFF
    assert (words[0::2] & 0xFFFF == 0).all() and ((words[0::2] >> 16) & 0xFFFF == after).all()
    assert (words[1::2] == after).all()


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 9), st.integers(1, 11), st.integers(0, 2**20))
def test_pack_scales_round_trip(n: int, groups: int, seed: int) -> None:
    """Each word holds its group's fp16 scale in bits 0-15 and offset in bits 16-31 (negative, subnormal, zero and
    infinite values too); each row padded with zero words to a multiple of 4 (16 bytes)."""
    g = torch.Generator().manual_seed(seed)
    s, b = (torch.randn(n, groups, generator=g) * 10.0 ** torch.randint(-7, 6, (n, groups), generator=g)
            for _ in range(2))
    b[0, 0] = float("inf")
    words = common.pack_scales(s, b)
    assert words.dtype == torch.int32 and words.shape == (n, -(-groups // 4) * 4) and words.is_contiguous()
    assert not words[:, groups:].any()
    w = words[:, :groups].long() & 0xFFFFFFFF
    for half, t in ((w & 0xFFFF, s), (w >> 16, b)):  # 16 bits -> the int16 of the same bits
        assert torch.equal(((half + 2**15) % 2**16 - 2**15).to(torch.int16), t.half().view(torch.int16))


def test_uniform_bf16_and_unaligned_activations() -> None:
    """bf16 activations through the GEMV paths (and, compiled only, the batch paths), and fp16 ones 2 bytes
    past a 4-byte boundary (the GEMV loads pairs of inputs as 32-bit words)."""
    qw = random_uniform(24, 256, 4, 64, seed=3, device=DEVICE)
    state = uniform.prepare(qw)
    for m, config in PATHS:
        if m > 1 and INTERPRET:  # Triton 3.9's interpreter returns garbage for a bf16 tl.dot
            continue
        x = xs(m, 256, m).to(torch.bfloat16)
        y = uniform.run(state, x, config)
        assert y.dtype == torch.bfloat16
        ref = x.double() @ qw.dequantize(torch.float64).to(x.device).T
        assert float((y.double() - ref).abs().max() / ref.abs().max()) < 1e-2
    buf = torch.zeros(257, dtype=torch.float16, device=DEVICE)
    x = buf[1:].view(1, 256)
    x.copy_(xs(1, 256, 7))
    assert x.data_ptr() % 4 == 2 and x.is_contiguous()
    xa = uniform.word_aligned(x)  # the interpreter reads misaligned words too: check the copy itself
    assert xa.data_ptr() % 4 == 0 and torch.equal(xa, x)
    check(qw, uniform.run(state, x, PATHS[1][1]), x)


@pytest.mark.parametrize("shape", [(4096, 4096), (11008, 4096), (4096, 11008), (576, 576), (192, 576), (1536, 576),
                                   (576, 1536)])
def test_tiles_cover_model_shapes(shape: tuple[int, int]) -> None:
    """Every configuration tiles the benchmark and SmolLM2 shapes (no launch): blocks divide K, a power
    of two of them per iteration, at least 16 inputs per pair of shifts for ``tl.dot``."""
    d_out, d_in = shape
    for gs in (32, 64, 128, d_in):
        if d_in % gs:
            continue
        kb = common.block_size(d_in, gs)
        assert d_in % kb == 0 and gs % kb == 0
        for m in (1, 16, 64):
            for c in common.candidates(m) + common.candidates(m, tensor_core=True):
                for bits in (1, 2, 3, 4):
                    per = common.PER[bits]
                    gpi = common.blocks_per_iter(c, per, kb, d_in // kb, m)
                    assert gpi & (gpi - 1) == 0 and (m == 1 or 2 * gpi * kb // per >= 16)


@pytest.mark.parametrize("fmt", ["uniform", "table", "additive"])
def test_smollm2_kv_shape(fmt: str) -> None:
    """A SmolLM2 k/v projection (192 x 576: 4.5 blocks of 128, 9 of 64) through the default configuration."""
    if fmt == "uniform":
        qw = random_uniform(192, 576, 4, 64, seed=3, device=DEVICE, n_outliers=30)
        state, run = uniform.prepare(qw), uniform.run
    elif fmt == "table":
        qw = random_table(192, 576, 3, seed=3, device=DEVICE)
        state, run = column_tables.prepare(qw), column_tables.run
    else:
        qw = random_additive(192, 576, 2, 8, seed=3, device=DEVICE)
        state, run = additive.prepare(qw), additive.run
    for m in (1, 3) if fmt == "uniform" else (1,):
        x = xs(m, 576, m)
        check(qw, run(state, x), x)


@cuda
@pytest.mark.parametrize("fmt", ["uniform", "table", "binary", "additive"])
def test_quant_linear_selects_triton_on_cuda(fmt: str) -> None:
    """Through QuantLinear and the kernel table: the Triton kernel is chosen for CUDA inputs of 1..64
    rows and matches the reference (the default configuration path)."""
    builders = {"uniform": lambda: random_uniform(256, 512, 4, 128, 0, act_order=True, n_outliers=20),
                "table": lambda: random_table(256, 512, random_widths(512, (2, 3, 4)), 0, n_outliers=20),
                "binary": lambda: random_binary(256, 512, 3, 128, 0),
                "additive": lambda: random_additive(256, 512, 2, 8, 0, n_outliers=20)}
    qw = builders[fmt]()
    ql = QuantLinear.from_qweight(qw).cuda()
    assert select(ql.meta, "cuda", 1).name == f"triton_{fmt}"
    for m in (1, 16, 64):
        x = torch.randn(m, 512, device="cuda").half()
        check(qw, ql(x), x)
    assert select(ql.meta, "cuda", 65).name == "reference"


def test_table_without_cuda_falls_back() -> None:
    """On the CPU the Triton entries never qualify (device ``cuda``)."""
    qw = random_uniform(8, 64, 4, 32)
    assert not select(QuantLinear.from_qweight(qw).meta, "cpu", 2).name.startswith("triton")


def test_tuned_configs_round_trip(tmp_path, monkeypatch) -> None:
    """The per-GPU file the benchmark's sweep writes (key text -> Config fields) reads back as Configs,
    under a file name made from the GPU's name."""
    import json

    monkeypatch.setattr(common, "TUNED_DIR", tmp_path)
    gpu = "NVIDIA H100 80GB HBM3"
    key = common.key_text(("uniform", 4096, 4096, 4, 128, False, False, 1, torch.float16, gpu))
    best = Config(32, 64, 4, 3, 4)
    path = common.tuned_path(gpu)
    assert path.parent == tmp_path and path.name == "nvidia_h100_80gb_hbm3.json"
    path.write_text(json.dumps({key: dataclasses.asdict(best)}))
    assert common.load_tuned(gpu) == {key: best}
    assert common.load_tuned("another GPU") == {}


@given(nbytes=st.integers(1, 1 << 34), l2=st.integers(1 << 20, 1 << 28))
@settings(max_examples=50, deadline=None)
def test_copies_past_l2(nbytes: int, l2: int) -> None:
    """Copies of a state rotated through by the tuner and the benchmark: at least 2, at most 64, and past
    twice the L2 cache whenever 64 copies can be."""
    n = timing.n_copies(nbytes, l2)
    assert 2 <= n <= 64
    if 64 * nbytes > 2 * l2:
        assert n * nbytes > 2 * l2


def test_state_copies_are_deep() -> None:
    """``map_tensors(state, torch.clone)`` copies every tensor of a kernel state (nested dataclasses and
    lists) and keeps its other fields; ``state_bytes`` counts them all."""
    qw = random_table(36, 160, random_widths(160, (2, 4), 3, DEVICE), seed=4, device=DEVICE, n_outliers=7)
    st0 = column_tables.prepare(qw, DEVICE)
    st1 = timing.map_tensors(st0, torch.clone)
    seen: list[tuple[int, int]] = []
    timing.map_tensors(st0, lambda t: seen.append((t.data_ptr(), t.numel())) or t)
    copied: list[tuple[int, int]] = []
    timing.map_tensors(st1, lambda t: copied.append((t.data_ptr(), t.numel())) or t)
    assert len(seen) == len(copied) > 3 and not {p for p, _ in seen} & {p for p, _ in copied}
    assert [n for _, n in seen] == [n for _, n in copied]
    assert timing.state_bytes(st0) == timing.state_bytes(st1) > 0
    x = xs(2, 160, 0)
    torch.testing.assert_close(column_tables.run(st1, x), column_tables.run(st0, x))


@cuda
def test_tuner_times_in_graphs_and_not_while_capturing(monkeypatch) -> None:
    """An untuned key is timed in CUDA graphs over copies past L2 and the fastest kept, and used inside a
    later capture; a key first met during a capture is not timed (it cannot be) and gets the first
    candidate."""
    monkeypatch.setenv("LOWBIT_TRITON_TUNE", "1")
    monkeypatch.setattr(common, "_BEST", {})
    monkeypatch.setattr(common, "_LOADED", {torch.cuda.get_device_name()})  # no per-GPU file
    qw = random_uniform(256, 512, 4, 128, seed=3, device=DEVICE)
    st0 = uniform.prepare(qw, DEVICE)
    x = xs(1, 512, 0)
    key, configs = uniform.tuning(st0, common.as_activations(x))
    configs = configs[:3]  # three candidates: few compilations
    monkeypatch.setattr(uniform, "tuning", lambda st, xa: (key, configs))
    y = uniform.run(st0, x)
    best = common._BEST[common.key_text((*key, torch.cuda.get_device_name()))]
    assert best in configs
    torch.testing.assert_close(y, uniform.run(st0, x, best))
    used: list[Config] = []
    launch = uniform._launch
    monkeypatch.setattr(uniform, "_launch", lambda st, xa, c: used.append(c) or launch(st, xa, c))
    uniform.run(st0, x, configs[0])  # compiled before the captures
    common._BEST[common.key_text((*key, torch.cuda.get_device_name()))] = configs[1]  # known, not the first
    with torch.cuda.graph(torch.cuda.CUDAGraph()):
        uniform.run(st0, x)  # a tuned key keeps its configuration inside a capture
    assert used[-1] == configs[1]
    monkeypatch.setattr(common, "_BEST", {})
    with torch.cuda.graph(torch.cuda.CUDAGraph()):
        uniform.run(st0, x)  # an untuned one cannot be timed there: the first candidate, not kept
    assert used[-1] == configs[0] and common._BEST == {}


@cuda
def test_tickets_in_cuda_graphs(monkeypatch) -> None:
    """Ticket words first needed inside a capture are the graph's own (each replay zeroes them), never the
    device's; outside graphs a launch gets the device's words, zero as it found them; replays and eager
    launches in turn keep the sums right (split 4 at batch 6, split 2 at batch 1)."""
    monkeypatch.setattr(common, "_TICKETS", {})
    monkeypatch.setattr(common, "_CAPTURED", [])
    qw = random_uniform(256, 512, 4, 128, seed=4, device=DEVICE)
    st0 = uniform.prepare(qw, DEVICE)
    for m, config in [(6, Config(32, 32, 4, 2, 4, tickets=True)), (1, Config(32, 16, 4, 2, 2, tickets=True))]:
        x = xs(m, 512, m)
        uniform.run(st0, x, config)  # compiled before the capture
        common._TICKETS.clear()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            y = uniform.run(st0, x, config)
        assert len(common._CAPTURED) == 1 and common._TICKETS[x.device] == []
        for _ in range(3):
            graph.replay()
            check(qw, y, x)
            check(qw, uniform.run(st0, x, config), x)
        (words,) = common._TICKETS[x.device]
        assert not (words[0::2] & 0xFFFF).any()
        common._CAPTURED.clear()


@cuda
def test_tickets_across_streams(monkeypatch) -> None:
    """Eager ticketed launches on two streams in turn, with nothing synchronizing them: each waits for the
    other stream's queued work before it takes tickets (``common.after_last_stream``), so the sums are right."""
    monkeypatch.setattr(common, "_STREAM", {})
    qw = random_uniform(256, 512, 4, 128, seed=5, device=DEVICE)
    st0 = uniform.prepare(qw, DEVICE)
    config = Config(32, 32, 4, 2, 4, tickets=True)
    x = xs(6, 512, 6)
    uniform.run(st0, x, config)  # compiled
    streams = [torch.cuda.Stream(), torch.cuda.Stream()]
    for s in streams:
        s.wait_stream(torch.cuda.current_stream())
    ys = []
    for i in range(8):
        with torch.cuda.stream(streams[i % 2]):
            ys.append(uniform.run(st0, x, config))
            assert common._STREAM[x.device] == streams[i % 2]
    torch.cuda.synchronize()
    for y in ys:
        check(qw, y, x)


def test_table_mixed_bf16_adds_in_fp32() -> None:
    """Mixed widths always add their segments' partials atomically; with bf16 activations they go through
    an fp32 buffer (the interpreter has no bf16 atomic add, and a bf16 partial keeps 8 bits) and come back
    in bf16. 4-bit columns take a multiple of 32 columns an iteration."""
    bits = random_widths(96, (2, 4), 5, DEVICE)
    qw = random_table(40, 96, bits, seed=5, device=DEVICE, n_outliers=5)
    state = column_tables.prepare(qw)
    for m, config in [(1, Config(32, 32, 4, 1, 1)), (1, Config(32, 64, 4, 1, 2))]:
        x = xs(m, 96, m).to(torch.bfloat16)
        check(qw, column_tables.run(state, x, config), x)
    with pytest.raises(ValueError, match="multiple of 32"):
        column_tables.run(state, xs(1, 96, 0), Config(32, 16, 4, 1, 1))
