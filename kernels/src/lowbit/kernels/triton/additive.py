"""Additive codebooks (AQLM, arXiv 2401.06118): ``W_hat[n, 8j:8j+8] = s[n] sum_m C_m[code[n, j, m]]``, g = 8.

Layout built once by :func:`prepare`: the M codes of each (row n, group j) in one int16 word
``sum_m code_m << (m B)`` (M B <= 16: "2x8" and "1x16", 2 bits per weight), a ``(d_out, d_in / 8)``
matrix stored with the rows contiguous for codebooks of B <= 8 bits in layers of at least
:data:`LUT_MIN_WEIGHTS` weights (strides ``(1, d_out)``: a warp's 16-byte loads cover 256 consecutive rows
of one group, as the table GEMV below wants; ``AdditiveState.table``) and otherwise with the groups
contiguous (K-contiguous per output row: a program owning ``BLOCK_N`` rows streams ``BLOCK_N`` contiguous
runs; the 1x16 GEMV took 1.09-1.24x the time with the rows contiguous at its tuned configurations, and
SmolLM2's 2x8 layers decoded slower with them, docs/results.md, v10); codebooks ``(M, 2^B, 8)`` fp16;
scales ``(d_out,)`` fp16, applied once per row after the reduction (``y_n = s_n sum_j <x_j, sum_m C_m[c_njm]>``).

**GEMV with a table of dot products** (layers whose rows are contiguous, above; AQLM's batch-1 trick, as in
its CPU kernels; the tuner chooses it or the codeword GEMV by configuration, tiles of at least
:data:`LUT_MIN_ROWS` rows taking the table): a first small kernel (:func:`dots_kernel`) computes, for this
call's activations, every group's dot product with every codeword, ``LUT_m[j, c] = <x_j, C_m[c]>`` (fp32,
``(d_in / 8 + 1, M 2^B)``: 1 MiB for 2x8 and d_in = 4096; each codeword's 8 products are summed in one
thread), and zeroes the output that the main kernel's split-K programs add into. The main kernel then sums
one gathered entry per code, ``y_n = s_n sum_j sum_m LUT_m[j, c_njm]``: no multiplication in its loop
(1.7-1.8 sm_90 instructions a weight against 5.5-6.2 for gathering codewords, Triton 3.6 and 3.9 offline). A
warp's lanes hold rows of one group (the transposed layout), so the 32 entries of one gather instruction
fall in that group's 1 KiB table of 8 cache lines (gathering the 16-byte codewords themselves touched, in
expectation, 20 of a codebook's 32 lines; docs/results.md, v9). Tiles are wide along the rows (128-1024) and
split along K (:data:`LUT_CONFIGS`), so that each program reads its groups' tables once for many rows. On
sm_90 the main kernel is a programmatic dependent launch of the table's: it starts at once, issues its first
codes' and the outlier walk's loads, and waits (``griddepcontrol.wait``) only before reading the table.
Measured and not kept (docs/results.md, v10): computing each iteration's table inside the main kernel and
gathering it from shared memory (``tl.gather``), 2.7-4.3x slower; fp16 entries with a scale per group, up to
1.13x slower.

**Codeword gathers** (batches; GEMVs of 1x16, whose table would be 65536 entries a group, and of smaller layers; and
whatever the tuner chooses), summing the M codebooks' vectors in fp16 (codewords of row-scaled weights are small),
in natural input order. Batches gather each codeword as four 32-bit words into a ``(BLOCK_N, BLOCK_J, 4, 2)`` tile
(:func:`codeword_pairs`), reshaped (no permute) to ``(BLOCK_N, 8 BLOCK_J)`` fp16, the register operand of ``tl.dot``
against the activations (``Y^T = W_hat X^T``, fp32 products and accumulation; since v14: before, the activations
were that operand and the weights' tile was converted through shared memory, and 2x8 batches took 1.2-1.5x as long
on the H100). The GEMV gathers each code's 8-vector (one 16-byte load) into a ``(BLOCK_N, BLOCK_J, 8)`` tile,
multiplies it by the ``(BLOCK_J, 8)`` activations in fp32 and sums each group into an fp32 ``(BLOCK_N, BLOCK_J)``
accumulator, reduced once after the loop (products and group sums in fp16 overflowed to inf for activations of a few
hundred against codewords of 30, where the result is far inside fp16). For 2x8 the two codebooks are 8 KiB and stay
in L1 (the AQLM CUDA kernel copies them to shared memory; Triton's ``tl.gather`` stores its source to shared memory
at every call and reads one element a load: batch tiles compiled to 14.0-15.3 sm_90 instructions a weight that way,
against 4.3-5.3, offline, v10); for 1x16 the 1 MiB codebook is read through L2 as in the AQLM 1x16 kernel. Sparse
outliers are added in the same pass after the scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from lowbit.core.formats import QuantizedWeight

from .common import (
    Config,
    Outliers,
    block_m,
    candidates,
    compiled_ptx,
    dependent_launch,
    finish,
    gather_stages,
    grid_outliers,
    halves,
    load_x,
    loads_ahead,
    mac,
    out_chunk,
    outlier_args,
    outliers_begin,
    outliers_end,
    output,
    run_tuned,
    signed_bits,
    split_blocks,
    store_y,
    zeros_acc,
)

GROUP = 8
LUT_BITS = 8  # codebooks of at most this many bits can take the table-of-dot-products GEMV
LUT_MIN_ROWS = 128  # GEMV configurations of at least this many rows a tile take it (all of LUT_CONFIGS)
# Layers of at least this many weights (and codebooks of <= 8 bits) store their rows contiguous and offer
# the table GEMV to the tuner; smaller ones keep v9's layout and codeword GEMV. The 4096-wide layers
# (16.8M-45M) ran 1.6-2.4x faster with it; SmolLM2's (at most 0.9M) decoded slower in CUDA graphs with the
# rows contiguous, with or without the table (docs/results.md, v10). Sizes in between were not measured.
LUT_MIN_WEIGHTS = 1 << 22

# The table GEMV's tiles: 128-1024 rows (a warp's 16-byte loads span 256 rows of one group), 4-16 groups
# per iteration (``words // 2``), split along K so that the 4096-row layers have 128-256 programs (the
# fastest of 24 configurations at each benchmark shape on the H100 and those near them,
# docs/results/kernels/ab_v10/parts_additive_h100_v10.json), or 512-1024 programs: the main kernel of the
# fastest ran with 12.6% of warp slots active, waiting on its loads (ncu, docs/results.md, v10); and
# neighbours of the first sweep's choice, 512 rows on 4 warps split by 32.
LUT_CONFIGS = [Config(512, 32, 8, 2, 16), Config(256, 16, 4, 2, 16), Config(256, 32, 4, 2, 8),
               Config(1024, 16, 8, 2, 16), Config(256, 16, 4, 2, 8), Config(1024, 16, 16, 2, 32),
               Config(512, 16, 8, 2, 32), Config(512, 16, 8, 2, 8), Config(128, 16, 2, 2, 8),
               Config(1024, 32, 16, 2, 16), Config(512, 32, 8, 2, 32), Config(256, 32, 4, 2, 16),
               Config(256, 16, 4, 2, 32), Config(256, 16, 4, 2, 64), Config(512, 16, 8, 2, 64),
               Config(128, 16, 4, 2, 32), Config(256, 16, 4, 1, 32), Config(512, 16, 4, 2, 32),
               Config(512, 16, 4, 1, 32), Config(512, 32, 4, 2, 32), Config(512, 8, 4, 2, 32),
               Config(512, 16, 4, 2, 16), Config(256, 16, 2, 2, 32), Config(1024, 16, 4, 2, 32)]


@dataclass
class AdditiveState:
    """The kernel layout of one additive weight (see the module docstring)."""

    codes: Tensor  # (d_out, d_in / 8) int16: sum_m code_m << (m B); strides (1, d_out) where table
    codebooks: Tensor  # (M, 2^B, 8) fp16
    scales: Tensor  # (d_out,) fp16
    outliers: Outliers | None
    n_codebooks: int
    bits: int
    shape: tuple[int, int]
    table: bool  # rows contiguous, the table GEMV offered (B <= 8, at least LUT_MIN_WEIGHTS weights)


def prepare(qw: QuantizedWeight, device: torch.device | str | None = None, table: bool | None = None
            ) -> AdditiveState:
    """Re-layout an additive ``qw`` (codes ``(d_out, d_in / 8, M)``) for the kernel (once). ``table``: store
    the rows contiguous and offer the table GEMV (default: codebooks of <= 8 bits and at least
    :data:`LUT_MIN_WEIGHTS` weights)."""
    dev = torch.device(device) if device is not None else qw.codes.device
    assert qw.codebooks is not None and qw.scales is not None
    d_out, d_in = qw.shape
    n_cb, b = qw.codes.shape[-1], int(qw.bits)
    if n_cb * b > 16 or d_in % GROUP:
        raise ValueError(f"the kernel takes M x B <= 16 bits of codes per group of {GROUP} inputs, got {n_cb}x{b} "
                         f"and d_in = {d_in}")
    codes = qw.codes.to(dev).long()
    word = signed_bits(sum(codes[..., m] << (m * b) for m in range(n_cb)), 16, torch.int16)  # (d_out, J)
    if table is None:
        table = b <= LUT_BITS and d_out * d_in >= LUT_MIN_WEIGHTS
    elif table and b > LUT_BITS:
        raise ValueError(f"the table GEMV takes codebooks of at most {LUT_BITS} bits, not {b}")
    word = word.T.contiguous().T if table else word.contiguous()  # table: stored (J, d_out)
    return AdditiveState(word,
                         qw.codebooks.to(dev, torch.float16).contiguous(),
                         qw.scales.to(dev, torch.float16).reshape(-1).contiguous(), grid_outliers(qw, dev), n_cb, b,
                         (d_out, d_in), table)


def uses_lut(st: AdditiveState, m: int, c: Config) -> bool:
    """Whether ``m`` activation rows at configuration ``c`` take the table-of-dot-products GEMV: one row,
    a layer that offers it (``st.table``) and tiles of at least :data:`LUT_MIN_ROWS` rows (the tuner chooses between the
    two GEMVs per shape: the table's extra launch cost SmolLM2's small layers more than it saved)."""
    return m == 1 and st.table and c.block_n >= LUT_MIN_ROWS


@triton.jit
def dots_kernel(X, CB, LUT, Y, n_groups, N, NE: tl.constexpr, NE_P: tl.constexpr, BLOCK_G: tl.constexpr,
                ZERO: tl.constexpr, PDL: tl.constexpr):
    """``LUT[j, e] = <X[0, 8j:8j+8], CB[e]>`` in fp32 for ``BLOCK_G`` groups ``j`` and all ``NE = M 2^B``
    codewords ``e`` (``CB`` ``(NE, 8)``, ``NE_P`` its power of two); the row ``j = n_groups`` is zeros
    (the entries of masked groups). ``ZERO > 0``: also zero ``Y[0, ZERO pid ..]`` (``ZERO`` entries), the
    output the main kernel's split-K programs add into (one launch fewer than a separate fill). ``PDL``
    (programmatic dependent launch, sm_90+): let the main kernel launch at once (:func:`additive_kernel`
    waits for this one's writes before it reads them)."""
    if PDL:
        gdc_launch_dependents()
    pid = tl.program_id(0)
    t = tl.arange(0, 8)
    e = tl.arange(0, NE_P)
    cb = tl.load(CB + e[:, None] * 8 + t[None, :], mask=(e < NE)[:, None], other=0.0).to(tl.float32)  # (NE_P, 8)
    for g in tl.static_range(BLOCK_G):  # one group at a time: each codeword's 8 products summed in its thread
        j = pid * BLOCK_G + g
        x = tl.load(X + j * 8 + t, mask=j * 8 + t < n_groups * 8, other=0.0).to(tl.float32)
        tl.store(LUT + j * NE + e, tl.sum(cb * x[None, :], axis=1), mask=(e < NE) & (j + 0 * e <= n_groups))
    if ZERO > 0:
        z = pid * ZERO + tl.arange(0, ZERO)
        tl.store(Y + z, tl.zeros((ZERO,), dtype=Y.dtype.element_ty), mask=z < N)


@triton.jit
def gather(ptr, ASM: tl.constexpr):
    """``*ptr`` (a 32-bit type: fp32 table entries, int32 codebook words), in ``ptr``'s layout. ``ASM``: an
    inline ``ld.global.nc`` (read-only data: the table, which the dependent launch's table kernel may still
    be writing while this kernel runs, is read only after ``gdc_wait``, when its writes are complete and
    visible). Triton gives a ``tl.load`` a layout of its own, vectorized along contiguous addresses, and
    converts the loaded tile (or the address tile, where nothing is contiguous) to the layout its user
    needs through shared memory (two 64-bit tiles an iteration in the table GEMV, Triton 3.9 offline; the
    batches' codeword tiles, :func:`codeword_pairs`); an inline load takes its user's layout."""
    if ASM:
        v = tl.inline_asm_elementwise("ld.global.nc.b32 $0, [$1];", "=r,l", [ptr], dtype=ptr.dtype.element_ty,
                                      is_pure=True, pack=1)
    else:
        v = tl.load(ptr)
    return v


@triton.jit
def add_halves(v, u, ASM: tl.constexpr):
    """``v + u`` on the fp16 halves of 32-bit words (one ``add.f16x2`` on the GPU; the same fp16 sums
    elementwise in Triton's interpreter)."""
    if ASM:
        v = tl.inline_asm_elementwise("add.f16x2 $0, $1, $2;", "=r,r,r", [v, u], dtype=tl.int32, is_pure=True,
                                      pack=1)
    else:
        lo, hi = halves(v, tl.float16)
        lo2, hi2 = halves(u, tl.float16)
        v = ((lo + lo2).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF) | \
            ((hi + hi2).to(tl.int16, bitcast=True).to(tl.int32) << 16)
    return v


@triton.jit
def codeword_pairs(CB, c, NCB: tl.constexpr, B: tl.constexpr, ASM: tl.constexpr):
    """``sum_m C_m[code_m]`` for the ``(BLOCK_N, BLOCK_J)`` code words ``c`` as a ``(BLOCK_N, BLOCK_J, 4, 2)``
    fp16 tile (element ``[n, j, i, h]`` is input ``8 j + 2 i + h`` of the group: natural order). Each codeword
    is read as four 32-bit words by :func:`gather`, the codebooks added in f16x2 (:func:`add_halves`), each
    word split into its two fp16 (one ``mov`` on the GPU). On the GPU the inline loads take the ``tl.dot``
    operand's layout, 4 bytes of a codeword a thread, where vectorized loads of whole codewords were converted
    to it through shared memory every iteration (36-38 barriers an iteration, offline; docs/results.md, v14)."""
    e4 = tl.arange(0, 4)[None, None, :]
    words = CB.to(tl.pointer_type(tl.int32))
    mask: tl.constexpr = (1 << B) - 1
    v = gather(words + (c & mask)[:, :, None] * 4 + e4, ASM)
    for i in tl.static_range(1, NCB):
        v = add_halves(v, gather(words + (i << B) * 4 + ((c >> (i * B)) & mask)[:, :, None] * 4 + e4, ASM), ASM)
    if ASM:
        lo, hi = tl.inline_asm_elementwise("mov.b32 {$0, $1}, $2;", "=h,=h,r", [v],
                                           dtype=(tl.float16, tl.float16), is_pure=True, pack=1)
    else:
        lo, hi = halves(v, tl.float16)
    return tl.join(lo, hi)


@triton.jit
def load_codes(C, offs_n, N, stride_cn, stride_cj, j0, j_end, BLOCK_J: tl.constexpr):
    """The ``(BLOCK_N, BLOCK_J)`` code words ``C[n, j]`` of rows ``offs_n`` (0 past ``N``) and groups ``j0 ..``
    (those before ``j_end``) as unsigned int32 (rows masked, not clamped: a stride of 1 along the rows
    keeps 16-byte loads)."""
    jj = j0 + tl.arange(0, BLOCK_J)
    c = tl.load(C + offs_n[:, None] * stride_cn + jj[None, :] * stride_cj,
                mask=(offs_n < N)[:, None] & (jj < j_end)[None, :], other=0)
    return c.to(tl.int32) & 0xFFFF


@triton.jit
def additive_kernel(X, LUT, Y, T, C, CB, S, PTR, OROW, OCOL, OVAL, M, N, K, stride_xm, stride_cn, stride_cj,
                    n_groups, NCB: tl.constexpr, B: tl.constexpr, USE_LUT: tl.constexpr, HAS_OUT: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr, SPLIT: tl.constexpr,
                    SPLIT_GROUPS, OUT_CHUNK: tl.constexpr, PREFETCH: tl.constexpr, ASM: tl.constexpr,
                    PDL: tl.constexpr, TICKETS: tl.constexpr):
    """``Y[m, n] = S[n] sum_j <X[m, 8j:8j+8], sum_i CB[i, code_i(n, j)]>`` for ``BLOCK_N`` rows over groups
    ``pid_k SPLIT_GROUPS ..`` (all ``n_groups = K / 8`` without split), ``BLOCK_J`` groups per iteration.
    ``USE_LUT`` (GEMV): sum the entries ``LUT[j, i 2^B + code_i(n, j)]`` of the table of dot products
    (:func:`dots_kernel`) instead of gathering codewords (:func:`gather`, inline PTX with ``ASM``). ``PREFETCH``
    (:func:`lowbit.kernels.triton.common.loads_ahead`, GEMV only): the next iteration's codes are loaded
    before this one's gathers, so the gathers do not wait for a load from memory. ``PDL`` (launched as a
    programmatic dependent of :func:`dots_kernel`): the outlier walk's loads, and with ``PREFETCH`` the first
    codes', are issued before waiting for the table (and the zeroed ``Y``)."""
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = tl.minimum(offs_n, N - 1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < M
    j_start = pid_k * SPLIT_GROUPS
    j_end = tl.minimum(j_start + SPLIT_GROUPS, n_groups)
    if HAS_OUT:  # the outlier walk's first loads, before the main loop
        o_first, o_end, o_r, o_d, o_c = outliers_begin(offs_n, N, PTR, OROW, OCOL, OVAL, pid_k, BLOCK_N, OUT_CHUNK,
                                                       SPLIT)
    e = tl.arange(0, 8)
    if USE_LUT:
        acc = tl.zeros((BLOCK_N, BLOCK_J), dtype=tl.float32)
    else:
        acc = zeros_acc(BLOCK_M, BLOCK_N, BLOCK_J, 1)
    if PREFETCH:
        cn = load_codes(C, offs_n, N, stride_cn, stride_cj, j_start, j_end, BLOCK_J)
    if PDL:
        gdc_wait()
    for j0 in range(j_start, j_end, BLOCK_J):
        jj = j0 + tl.arange(0, BLOCK_J)
        ok = jj < j_end
        if PREFETCH:
            c = cn
            cn = load_codes(C, offs_n, N, stride_cn, stride_cj, j0 + BLOCK_J, j_end, BLOCK_J)
        else:
            c = load_codes(C, offs_n, N, stride_cn, stride_cj, j0, j_end, BLOCK_J)
        if USE_LUT:  # groups past j_end (codes 0) read the zero row n_groups
            t = LUT + tl.where(ok, jj, n_groups)[None, :] * (NCB << B)
            v = gather(t + (c & ((1 << B) - 1)), ASM)
            for i in tl.static_range(1, NCB):
                v += gather(t + (i << B) + ((c >> (i * B)) & ((1 << B) - 1)), ASM)
            acc += v
        else:
            k = jj[:, None] * 8 + e[None, :]
            x = load_x(X, stride_xm, offs_m, m_mask, k, ok[:, None], X, False)
            if BLOCK_M == 1:
                w = tl.load(CB + (c & ((1 << B) - 1))[:, :, None] * 8 + e[None, None, :])
                for i in tl.static_range(1, NCB):
                    code = (c >> (i * B)) & ((1 << B) - 1)
                    w += tl.load(CB + (i << B) * 8 + code[:, :, None] * 8 + e[None, None, :])
                acc += tl.sum(w.to(tl.float32) * x.to(tl.float32), axis=2, keep_dims=True)
            else:
                acc = mac(acc, x, codeword_pairs(CB, c, NCB, B, ASM), BLOCK_M, BLOCK_N, BLOCK_J * 8)
    if USE_LUT:
        acc = tl.sum(acc, axis=1)[None, :]
    else:
        acc = finish(acc, BLOCK_M)
    acc *= tl.load(S + rows).to(tl.float32)[None, :]
    if HAS_OUT:
        acc = outliers_end(acc, o_first, o_end, o_r, o_d, o_c, X, stride_xm, offs_m, m_mask, offs_n, N, PTR, OROW, OCOL,
                           OVAL, BLOCK_M, OUT_CHUNK, SPLIT)
    store_y(Y, acc, offs_m, m_mask, offs_n, N, SPLIT, T, TICKETS)


def dot_table(st: AdditiveState, x: Tensor, y: Tensor | None = None, pdl: bool = False) -> Tensor:
    """The ``(d_in / 8 + 1, M 2^B)`` fp32 table ``LUT_m[j, c] = <x_j, C_m[c]>`` of one activation row ``x``
    (and a last row of zeros); zeroes ``y`` ``(1, d_out)`` in the same launch where given. ``pdl``: the
    next kernel is launched as its programmatic dependent."""
    if x.shape != (1, st.shape[1]) or st.bits > LUT_BITS:
        raise ValueError(f"a table of dot products takes one row of {st.shape[1]} activations and codebooks of at "
                         f"most {LUT_BITS} bits, got {tuple(x.shape)} and {st.bits} bits")
    n_groups, ne = st.shape[1] // GROUP, st.n_codebooks << st.bits
    lut = torch.empty(n_groups + 1, ne, dtype=torch.float32, device=x.device)
    ne_p = triton.next_power_of_2(ne)
    block_g = 4  # groups per program (the codebooks loaded once for them)
    grid = triton.cdiv(n_groups + 1, block_g)
    zero = 0 if y is None else triton.next_power_of_2(triton.cdiv(y.numel(), grid))
    dots_kernel[(grid,)](x, st.codebooks, lut, lut if y is None else y, n_groups, st.shape[0], NE=ne, NE_P=ne_p,
                         BLOCK_G=block_g, ZERO=zero, PDL=pdl)
    return lut


def _launch(st: AdditiveState, x: Tensor, c: Config) -> Tensor:
    if x.shape[1] != st.shape[1]:
        raise ValueError(f"x has {x.shape[1]} inputs, the weight {st.shape[1]}")
    m, (n, k) = x.shape[0], st.shape
    bm = block_m(m)
    lut = uses_lut(st, m, c)
    grid = (triton.cdiv(n, c.block_n), triton.cdiv(m, bm), c.split_k)
    y, words = output(m, n, grid, x, c, zeroed=lut)  # with a table, its launch zeroes y (without tickets)
    n_groups = k // GROUP
    # one int16 code per 8 weights: half a config word per group keeps the fp32 tiles at the uniform
    # kernel's size (BLOCK_N x words values)
    block_j = max(2, min(c.words // 2, triton.next_power_of_2(triton.cdiv(n_groups, c.split_k))))  # tl.dot: K >= 16
    pdl = lut and dependent_launch(x)
    table = dot_table(st, x, y if c.split_k > 1 and not c.tickets else None, pdl) if lut else x  # (x: a placeholder)
    additive_kernel[grid](
        x, table, y, words, st.codes, st.codebooks, st.scales, *outlier_args(st.outliers, y), m, n,
        k, x.stride(0), *st.codes.stride(), n_groups, NCB=st.n_codebooks, B=st.bits, USE_LUT=lut,
        HAS_OUT=st.outliers is not None, BLOCK_M=bm, BLOCK_N=c.block_n, BLOCK_J=block_j, SPLIT=c.split_k,
        SPLIT_GROUPS=split_blocks(n_groups, block_j, c.split_k), OUT_CHUNK=out_chunk(c.block_n, st.outliers),
        PREFETCH=loads_ahead(c, bm), ASM=compiled_ptx(x), PDL=pdl, TICKETS=c.tickets, num_warps=c.num_warps,
        num_stages=gather_stages(c, bm), **({"launch_pdl": True} if pdl else {}))
    return y.to(x.dtype)


def tuning(st: AdditiveState, xa: Tensor) -> tuple[tuple, list[Config]]:
    """The tuning key of ``st`` for activations ``xa`` and the configurations tried: for one row,
    a layer that offers the table GEMV (``st.table``), the codeword GEMV's and the table GEMV's
    (:data:`LUT_CONFIGS`)."""
    m = xa.shape[0]
    table = LUT_CONFIGS if m == 1 and st.table else []
    return (("additive", *st.shape, st.n_codebooks, st.bits, st.outliers is not None, block_m(m), xa.dtype),
            candidates(m) + table)


def run(st: AdditiveState, x: Tensor, config: Config | None = None) -> Tensor:
    """``x @ W_hat^T`` (:func:`lowbit.kernels.triton.common.run_tuned`); ``config`` forces a launch
    configuration (tests, the benchmark's sweep)."""
    return run_tuned(st, x, tuning, _launch, config)
