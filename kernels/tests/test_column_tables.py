"""The column-table kernel's layout and its inline PTX, without a GPU: the packing round-trips, and the
lookup assembly (:func:`lowbit.kernels.triton.column_tables.lookup_asm`), run by a small interpreter of the
PTX instructions it uses, returns every code's table entry. (The kernel itself is tested against the
torch reference in ``test_triton_kernels.py``; its PTX path runs only on CUDA.)"""

from __future__ import annotations

import os
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported, as test_triton_kernels.py does
pytest.importorskip("triton")

from lowbit.kernels.triton import column_tables as ct  # noqa: E402

M32 = 0xFFFFFFFF


def prmt(a: int, b: int, sel: int) -> int:
    """PTX ``prmt.b32`` (default mode): byte ``i`` of the result is byte ``sel`` nibble ``i`` & 7 of
    ``{b, a}``, sign-replicated where the nibble's bit 3 is set."""
    pool = [(a >> 8 * i) & 0xFF for i in range(4)] + [(b >> 8 * i) & 0xFF for i in range(4)]
    out = 0
    for i in range(4):
        s = (sel >> 4 * i) & 0xF
        v = pool[s & 7]
        if s & 8:
            v = 0xFF if v & 0x80 else 0
        out |= v << 8 * i
    return out


def run_ptx(asm: str, args: list[int], n_out: int) -> list[int]:
    """Execute ``asm`` (the subset :func:`lookup_asm` emits) on 32-bit ``args`` (``$n_out ..``); returns the
    ``n_out`` outputs' fp16 bit patterns (the operand of each ``cvt.f32.f16``, or the fp16 output itself)."""
    reg: dict[str, int] = {f"${n_out + i}": v & M32 for i, v in enumerate(args)}
    out: dict[int, int] = {}

    def val(x: str) -> int:
        x = x.strip()
        return int(x, 0) & M32 if x[0].isdigit() else reg[x]

    for ins in asm.strip("{} ").split(";"):
        ins = ins.strip()
        if not ins or ins.startswith(".reg"):
            continue
        op, rest = ins.split(None, 1)
        if op == "mov.b32":
            lo_hi, src = re.match(r"\{(\$?\w+), (\$?\w+)\}, (\S+)", rest).groups()[:2], rest.rsplit(",", 1)[1]
            v = val(src)
            reg[lo_hi[0]], reg[lo_hi[1]] = v & 0xFFFF, v >> 16
            continue
        ops = [o.strip() for o in rest.split(",")]
        if op == "cvt.f32.f16":
            out[int(ops[0][1:])] = reg[ops[1]]
            continue
        a = [val(o) for o in ops[1:]]
        reg[ops[0]] = {"shr.b32": lambda: a[0] >> a[1], "shl.b32": lambda: (a[0] << a[1]) & M32,
                       "and.b32": lambda: a[0] & a[1], "or.b32": lambda: a[0] | a[1],
                       "prmt.b32": lambda: prmt(*a)}[op]()
    return [out[i] if i in out else reg[f"${i}"] for i in range(n_out)]


@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_lookup_asm_returns_table_entries(bits: int, half: bool) -> None:
    """Each row of each word gets ``T[k, q[n, k]]`` exactly (as fp16 bits), every code value included; with
    ``half`` (batches) as fp16 outputs, else widened to fp32."""
    g = torch.Generator().manual_seed(bits)
    n, k = 64, 6
    codes = torch.randint(0, 1 << bits, (n, k), generator=g)
    codes[: 1 << bits, 0] = torch.arange(1 << bits)
    tables = torch.randn(k, 1 << bits, generator=g).half()
    words, high = ct.pack_rows(codes, bits)
    planes = ct.table_planes(tables, bits)
    rpw = ct.RPW[bits]
    asm = ct.lookup_asm(bits, half)
    assert ("cvt.f32.f16" in asm) != half
    for t in range(n // ct.BT):
        for c in range(k):
            for wi in range(ct.BT // rpw):
                args = [int(words[t, c, wi])] + ([int(high[t, c, wi])] if bits == 3 else [])
                args += [int(v) for v in planes[c]]
                got = run_ptx(asm, args, rpw)
                rows = t * ct.BT + wi * rpw + torch.arange(rpw)
                want = tables[c, codes[rows, c]].view(torch.int16).int() & 0xFFFF
                assert got == want.tolist(), (t, c, wi)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([1, 2, 3, 4]), st.integers(1, 3), st.integers(1, 9), st.integers(0, 2**20))
def test_pack_rows_round_trip(bits: int, tiles: int, k: int, seed: int) -> None:
    """Row ``r`` of word ``w`` of tile ``t`` (row ``t BT + w RPW + r``) is at bit :func:`row_shift` of the
    low plane, and for 3 bits its third bit at ``r // 4 + 4 (r % 4)`` of the high plane."""
    g = torch.Generator().manual_seed(seed)
    n = tiles * ct.BT
    codes = torch.randint(0, 1 << bits, (n, k), generator=g)
    words, high = ct.pack_rows(codes, bits)
    rpw = ct.RPW[bits]
    assert words.shape == (tiles, k, ct.BT // rpw) and words.dtype == torch.int32
    low = 2 if bits == 3 else bits
    shifts = torch.tensor([ct.row_shift(bits, r) for r in range(rpw)])
    back = (words.long()[..., None] >> shifts) & ((1 << low) - 1)  # (tiles, k, words, rpw)
    if bits == 3:
        assert high is not None and high.dtype == torch.int16
        hs = torch.tensor([r // 4 + 4 * (r % 4) for r in range(rpw)])
        back |= ((high.long()[..., None] >> hs) & 1) << 2
    else:
        assert high is None
    assert torch.equal(back.permute(0, 2, 3, 1).reshape(n, k), codes)


def test_table_planes_bytes() -> None:
    """Entry ``e``'s low byte is byte ``e`` of the planes, its high byte byte ``E + e`` (``E = max(4, 2^b)``);
    entries past ``2^b`` are dropped, missing ones zero."""
    tables = torch.randn(3, 6).half()
    for bits in (1, 2, 3, 4):
        e = max(4, 1 << bits)
        raw = ct.table_planes(tables, bits).contiguous().view(torch.uint8).reshape(3, 2 * e).long()
        want = torch.zeros(3, e, dtype=torch.long)
        keep = min(6, 1 << bits)
        want[:, :keep] = tables[:, :keep].view(torch.int16).long() & 0xFFFF
        assert torch.equal(raw[:, :e] | raw[:, e:] << 8, want)


def test_prepare_rejects_missing_tables() -> None:
    import dataclasses

    from lowbit.kernels.triton.random_weights import random_table

    qw = dataclasses.replace(random_table(8, 32, 2), tables=None)
    with pytest.raises(ValueError, match="tables"):
        ct.prepare(qw)


def test_prepare_and_run_reject_bad_input() -> None:
    """Widths outside 1..4, activations of the wrong width, and outlier indices beyond 16 bits fail with a
    ValueError that says so, instead of a wrong result."""
    import dataclasses

    from lowbit.kernels.triton.random_weights import random_table

    qw = random_table(8, 32, 2)
    with pytest.raises(ValueError, match="1 to 4 bits"):
        ct.prepare(dataclasses.replace(qw, bits=torch.full((32,), 5)))
    state = ct.prepare(qw)
    with pytest.raises(ValueError, match="inputs"):
        ct.run(state, torch.zeros(1, 33, dtype=torch.float16))
    with pytest.raises(ValueError, match="16 bits"):
        ct.prepare(random_table(4, 70_000, 2, n_outliers=1))


@pytest.mark.parametrize("pb", [1, 32])
def test_block_planes_places_each_word(pb: int) -> None:
    """Word ``i`` of column ``k`` lands at ``(k // pb) TW pb + i pb + k % pb`` of the flat blocked planes."""
    k, tw = 64, 8
    planes = torch.arange(k * tw, dtype=torch.int32).reshape(k, tw)
    flat = ct.block_planes(planes, pb).reshape(-1)
    for col in range(k):
        for i in range(tw):
            assert int(flat[(col // pb) * tw * pb + i * pb + col % pb]) == int(planes[col, i])
