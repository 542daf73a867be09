"""Packed storage: exact round trips for every width and format, reference matmul, QuantLinear, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.core.checkpoint import CheckpointError, CheckpointWriter, read_config, read_tensors
from lowbit.core.formats import QuantizedWeight, SparseOutliers
from lowbit.core.packing import SUPPORTED_BITS
from lowbit.core.storage import StorageError, decode, encode, pack_uint, packed_uint_nbytes, unpack_uint
from lowbit.kernels import QuantLinear, select
from lowbit.kernels.dispatch import REFERENCE, by_name


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 32), st.integers(0, 200), st.integers(0, 2**31 - 1))
def test_pack_uint_round_trip(bits: int, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    v = torch.randint(0, 1 << bits, (n,), generator=g, dtype=torch.int64) if bits else torch.zeros(n, dtype=torch.int64)
    p = pack_uint(v, bits)
    assert p.numel() == packed_uint_nbytes(n, bits)
    assert torch.equal(unpack_uint(p, bits, n), v)


def _outliers(shape: tuple[int, int], seed: int, k: int) -> SparseOutliers:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(shape[0] * shape[1], generator=g)[:k]
    return SparseOutliers(idx // shape[1], idx % shape[1], torch.randn(k, generator=g).half())


def uniform(d_out: int, d_in: int, gs: int, bits: int, seed: int, act_order: bool = False,
            n_out: int = 0) -> QuantizedWeight:
    g = torch.Generator().manual_seed(seed)
    G = d_in // gs
    g_idx = None
    if act_order:
        perm = torch.randperm(d_in, generator=g)
        g_idx = torch.empty(d_in, dtype=torch.int64)
        g_idx[perm] = torch.arange(d_in) // gs
    codes = torch.randint(0, 1 << bits, (d_out, d_in), generator=g).to(torch.uint8)
    return QuantizedWeight("uniform", (d_out, d_in), codes, bits, scales=torch.rand(d_out, G, generator=g) + 0.1,
                           zeros=torch.randint(0, 1 << bits, (d_out, G), generator=g).float(), group_size=gs,
                           g_idx=g_idx, outliers=_outliers((d_out, d_in), seed, n_out) if n_out else None)


def table(d_out: int, d_in: int, seed: int, n_out: int = 0) -> QuantizedWeight:
    g = torch.Generator().manual_seed(seed)
    widths = torch.randint(1, 5, (d_in,), generator=g)
    codes = (torch.rand(d_out, d_in, generator=g) * (2 ** widths).float()).long().to(torch.uint8)
    tables = torch.randn(d_in, 16, generator=g).half()
    return QuantizedWeight("table", (d_out, d_in), codes, widths, tables=tables,
                           outliers=_outliers((d_out, d_in), seed, n_out) if n_out else None)


def binary(d_out: int, d_in: int, gs: int, bits: int, seed: int) -> QuantizedWeight:
    g = torch.Generator().manual_seed(seed)
    G = d_in // gs
    codes = torch.randint(0, 1 << bits, (d_out, d_in), generator=g).to(torch.uint8)
    return QuantizedWeight("binary", (d_out, d_in), codes, bits, group_size=gs,
                           alphas=torch.rand(d_out, G, bits, generator=g).half(),
                           offsets=torch.randn(d_out, G, generator=g).half())


def additive(d_out: int, d_in: int, g: int, m: int, bits: int, seed: int, n_out: int = 0) -> QuantizedWeight:
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 1 << bits, (d_out, d_in // g, m), generator=gen)
    return QuantizedWeight("additive", (d_out, d_in), codes, bits, scales=torch.rand(d_out, generator=gen).half(),
                           group_size=g, codebooks=torch.randn(m, 1 << bits, g, generator=gen).half(),
                           outliers=_outliers((d_out, d_in), seed, n_out) if n_out else None)


def cases(seed: int) -> list[QuantizedWeight]:
    out = [uniform(7, 24, 8, b, seed + b, act_order=b % 2 == 0, n_out=b) for b in SUPPORTED_BITS if b <= 8]
    so = uniform(8, 16, 4, 3, seed)
    so.second_order = {"scales": uniform(4, 8, 4, 3, seed + 1)}  # (n_groups, d_out) statistics
    so.scales = None
    out += [so, table(9, 20, seed, n_out=5), table(9, 20, seed + 1), binary(6, 16, 8, 3, seed),
            additive(5, 16, 8, 2, 8, seed, n_out=3), additive(4, 8, 4, 1, 12, seed)]
    return out


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**20))
def test_encode_decode_exact(seed: int) -> None:
    for qw in cases(seed):
        meta, tensors = encode(qw)
        json.dumps(meta)  # the meta goes into config.json
        assert torch.equal(decode(meta, tensors).dequantize(), qw.dequantize()), meta["format"]


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**20), st.integers(1, 5))
def test_reference_matmul_equals_dequantize(seed: int, batch: int) -> None:
    for qw in cases(seed):
        x = torch.randn(batch, qw.shape[1], generator=torch.Generator().manual_seed(seed))
        ql = QuantLinear.from_qweight(qw, kernel="reference")
        torch.testing.assert_close(ql(x), x @ qw.dequantize().T, rtol=0, atol=0)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**20), st.sampled_from([1, 2, 3, 4]), st.booleans())
def test_cpu_kernel_matches_reference(seed: int, bits: int, act_order: bool) -> None:
    qw = uniform(33, 64, 16, bits, seed, act_order, n_out=4)
    ql = QuantLinear.from_qweight(qw)
    x = torch.randn(1, 64, generator=torch.Generator().manual_seed(seed))
    k = select(ql.meta, "cpu", 1)
    assert k.name == ("cpu_gemv_u4" if by_name("cpu_gemv_u4").available() else "reference")
    torch.testing.assert_close(ql(x), x @ qw.dequantize().T, rtol=1e-4, atol=1e-4)
    assert select(ql.meta, "cpu", 2) is REFERENCE  # batch > 1 falls back
    assert select(encode(table(4, 8, seed))[0], "cpu", 1) is REFERENCE


def test_quant_linear_state_dict_round_trip() -> None:
    qw = uniform(16, 32, 8, 3, 0, act_order=True, n_out=3)
    ql = QuantLinear.from_qweight(qw, bias=torch.randn(16))
    sd = ql.state_dict()
    assert {"codes", "scales", "zeros", "g_idx", "bias"} <= set(sd)
    ql2 = QuantLinear(ql.meta, {k: v for k, v in sd.items() if k != "bias"}, sd["bias"])
    x = torch.randn(3, 32)
    assert torch.equal(ql2(x), ql(x))
    assert torch.equal(ql2.qweight().dequantize(), qw.dequantize())


def test_missing_tensor_is_named() -> None:
    meta, tensors = encode(uniform(4, 8, 4, 2, 0))
    del tensors["scales"], tensors["zeros"]
    with pytest.raises(ValueError):
        decode(meta, tensors).dequantize()
    meta, tensors = encode(table(4, 8, 0))
    tensors.pop("codes__1", None) or tensors.pop("codes__2", None) or tensors.pop("codes__3")
    with pytest.raises(StorageError, match="missing tensor 'codes__"):
        decode(meta, tensors)


class _Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, 4)
        self.norm = torch.nn.LayerNorm(4)


def _write(dest: Path, overwrite: bool = False) -> Path:
    with CheckpointWriter(dest, overwrite) as w:
        w.add_block({"lin": uniform(4, 8, 4, 2, 0)})
        return w.finish(_Model(), None, {"recipe": {}})


def test_checkpoint_atomic_and_refuses_existing(tmp_path: Path) -> None:
    dest = _write(tmp_path / "ck")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporary left
    with pytest.raises(CheckpointError, match="already exists"):
        _write(tmp_path / "ck")
    _write(tmp_path / "ck", overwrite=True)
    with pytest.raises(RuntimeError), CheckpointWriter(tmp_path / "failed") as w:
        w.add_block({"lin": uniform(4, 8, 4, 2, 0)})
        raise RuntimeError("fails half-way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    _, qc = read_config(dest)
    assert qc["format_version"] == 1 and qc["layers"]["lin"]["format"] == "uniform"
    assert {"lin.codes", "lin.scales", "norm.weight", "lin.bias"} <= set(read_tensors(dest))


def test_checkpoint_bad_input(tmp_path: Path) -> None:
    dest = _write(tmp_path / "ck")
    shard = dest / "layers-00000.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[:-3])
    with pytest.raises(CheckpointError, match="truncated"):
        read_tensors(dest)
    shard.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(CheckpointError, match="corrupted"):
        read_tensors(dest)
    shard.write_bytes(data)
    index = json.loads((dest / "model.safetensors.index.json").read_text())
    index["weight_map"]["lin.extra"] = "layers-00000.safetensors"
    (dest / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="missing tensor"):
        read_tensors(dest)
    cfg = json.loads((dest / "config.json").read_text())
    cfg["quantization_config"]["format_version"] = 99
    (dest / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown lowbit format version 99"):
        read_config(dest)
