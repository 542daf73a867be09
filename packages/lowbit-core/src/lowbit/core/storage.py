"""Compact storage of a :class:`~lowbit.core.formats.QuantizedWeight`: flat named tensors plus JSON meta.

``encode(qw) -> (meta, tensors)`` and ``decode(meta, tensors) -> qw`` are exact inverses
(``decode(*encode(qw)).dequantize() == qw.dequantize()``), and what they store is what
:func:`lowbit.core.bits.bit_report` counts, part by part:

- codes of width b: :func:`lowbit.core.packing.pack`, ``ceil(d_out d_in b / 8)`` bytes (row-major);
  a ``table`` weight with per-column widths stores the columns of each width b together,
  column-major (``codes__b``: ``(n_b, d_out)`` codes at b bits) with only their ``2^b`` used table
  entries (``tables__b``: ``(n_b, 2^b)``); the widths themselves at 4 bits per column;
- float parameters (scales, continuous zeros, tables, coefficients, outlier values) in fp16 when
  that is exact, else in their own dtype (never widened beyond it; fp64 becomes fp32);
- integer zero points, ``g_idx`` and outlier indices as unsigned integers of exactly the width the
  accounting charges (:func:`pack_uint`: any width 1..32, in 8-bit chunks of ``packing.pack``);
- sparse outliers in CSR: row pointers at ``ceil(log2(nnz + 1))`` bits, column indices at
  ``ceil(log2 d_in)`` bits, values;
- second-order statistics (SpQR, arXiv 2306.03078) recursively, under ``second_order__<name>__``;
- additive codes (AQLM): the ``(d_out, d_in / g, M)`` codes at B bits each (:func:`pack_uint`, so B up
  to 16 for "1x16"), the ``(M, 2^B, g)`` codebooks and the per-row scales as floats.

Tensor names use ``__`` as separator, so that they are valid ``nn.Module`` buffer names and a
checkpoint's names are ``<linear>.<name>``. A new format joins by registering a :class:`Codec`
(:func:`register_codec`); sparse outliers are handled once for every format.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .formats import QuantizedWeight, SparseOutliers
from .packing import pack, unpack

Meta = dict[str, Any]
Tensors = dict[str, Tensor]
SEP = "__"


class StorageError(ValueError):
    """Stored tensors that cannot be decoded: a missing tensor, a wrong size, an unknown format."""


def uint_bits(n: int) -> int:
    """Bits of an unsigned index into ``n`` values: ``ceil(log2 n)`` (0 for n <= 1), as in the accounting."""
    return max(1, math.ceil(math.log2(n))) if n > 1 else 0


def pack_uint(values: Tensor, bits: int) -> Tensor:
    """Pack non-negative integers below ``2^bits`` (``bits`` in 0..32) at exactly ``bits`` bits each.

    The value is cut into 8-bit chunks (low first), each packed by :func:`lowbit.core.packing.pack`
    and concatenated: ``sum_chunks ceil(n * w_chunk / 8)`` bytes; 0 bits store nothing.
    """
    flat = values.reshape(-1).to(torch.int64)
    if bits == 0:
        if flat.numel() and int(flat.abs().max()) != 0:
            raise ValueError("0-bit values must all be zero")
        return torch.empty(0, dtype=torch.uint8)
    if not 1 <= bits <= 32:
        raise ValueError(f"pack_uint needs 0..32 bits, got {bits}")
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= 1 << bits):
        raise ValueError(f"values out of range for {bits} bits")
    parts, shift = [], 0
    while shift < bits:
        w = min(8, bits - shift)
        parts.append(pack((flat >> shift) & ((1 << w) - 1), w))
        shift += w
    return torch.cat(parts)


def unpack_uint(packed: Tensor, bits: int, n: int) -> Tensor:
    """Inverse of :func:`pack_uint`: ``n`` int64 values."""
    if bits == 0:
        return torch.zeros(n, dtype=torch.int64)
    out = torch.zeros(n, dtype=torch.int64)
    shift, start = 0, 0
    while shift < bits:
        w = min(8, bits - shift)
        nbytes = (n * w + 7) // 8
        chunk = packed.reshape(-1)[start: start + nbytes]
        if chunk.numel() != nbytes:
            raise StorageError(f"{packed.numel()} bytes cannot hold {n} values of {bits} bits")
        out |= unpack(chunk, w, n) << shift
        start += nbytes
        shift += w
    if start != packed.numel():
        raise StorageError(f"{packed.numel()} bytes for {n} values of {bits} bits; expected {start}")
    return out


def packed_uint_nbytes(n: int, bits: int) -> int:
    """Bytes :func:`pack_uint` uses for ``n`` values of ``bits`` bits."""
    return sum((n * min(8, bits - s) + 7) // 8 for s in range(0, bits, 8))


def store_float(t: Tensor) -> Tensor:
    """``t`` in fp16 when that is exact (the accounting's 16 bits), else fp32 (or its own 16-bit dtype)."""
    t = t.detach().cpu()
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.contiguous()
    t32 = t.float()
    half = t32.half()
    if torch.equal(half.float(), t32):
        return half.contiguous()
    return t32.contiguous()


def _need(tensors: Tensors, key: str) -> Tensor:
    try:
        return tensors[key]
    except KeyError:
        raise StorageError(f"missing tensor {key!r}") from None


def _codes(t: Tensor, bits: int, shape: tuple[int, ...]) -> Tensor:
    n = math.prod(shape)
    try:
        return unpack(t, bits, n).reshape(shape).to(torch.uint8 if bits <= 8 else torch.int64)
    except ValueError as e:
        raise StorageError(str(e)) from None


@dataclass(frozen=True)
class Codec:
    """How one format is stored: ``encode(qw) -> (meta, tensors)``; ``decode(meta, tensors) -> qw``
    (without outliers, which :func:`encode` / :func:`decode` handle for every format)."""

    encode: Callable[[QuantizedWeight], tuple[Meta, Tensors]]
    decode: Callable[[Meta, Tensors], QuantizedWeight]


CODECS: dict[str, Codec] = {}


def register_codec(fmt: str, codec: Codec) -> None:
    """Make format ``fmt`` storable (a new QuantizedWeight kind plugs in here)."""
    CODECS[fmt] = codec


def _int_bits(qw: QuantizedWeight) -> int:
    if isinstance(qw.bits, Tensor):
        raise ValueError(f"format {qw.format!r} with per-column widths has no storage layout yet")
    return int(qw.bits)


def _encode_groups(qw: QuantizedWeight, meta: Meta, out: Tensors) -> None:
    """``group_size`` and ``g_idx`` (at ``ceil(log2 n_groups)`` bits per column)."""
    meta["group_size"] = qw.group_size
    if qw.g_idx is not None:
        n_groups = int(qw.g_idx.max()) + 1
        meta["g_idx"] = {"n_groups": n_groups, "bits": uint_bits(n_groups)}
        out["g_idx"] = pack_uint(qw.g_idx.cpu(), uint_bits(n_groups))


def _decode_groups(meta: Meta, t: Tensors) -> Tensor | None:
    g = meta.get("g_idx")
    if g is None:
        return None
    return unpack_uint(_need(t, "g_idx"), int(g["bits"]), int(meta["shape"][1]))


def _encode_uniform(qw: QuantizedWeight) -> tuple[Meta, Tensors]:
    bits = _int_bits(qw)
    meta: Meta = {"bits": bits, "zero_bits": qw.zero_bits}
    out: Tensors = {"codes": pack(qw.codes.cpu(), bits)}
    _encode_groups(qw, meta, out)
    if qw.scales is not None:
        out["scales"] = store_float(qw.scales)
    if qw.zeros is not None:
        zb = qw.zero_bits or bits
        z = qw.zeros.detach().cpu()
        integral = zb <= 8 and bool((z == z.round()).all()) and (not z.numel() or (z.min() >= 0 and z.max() < 2**zb))
        if integral:
            meta["zeros"] = {"kind": "int", "bits": zb, "shape": list(z.shape)}
            out["zeros"] = pack_uint(z.round().long(), zb)
        else:
            meta["zeros"] = {"kind": "float"}
            out["zeros"] = store_float(z)
    if qw.second_order:
        meta["second_order"] = {}
        for name, stat in qw.second_order.items():
            m, ts = encode(stat)
            meta["second_order"][name] = m
            out.update({f"second_order{SEP}{name}{SEP}{k}": v for k, v in ts.items()})
    return meta, out


def _decode_uniform(meta: Meta, t: Tensors) -> QuantizedWeight:
    shape = (int(meta["shape"][0]), int(meta["shape"][1]))
    bits = int(meta["bits"])
    zeros = None
    zm = meta.get("zeros")
    if zm is not None and zm["kind"] == "int":
        n = math.prod(zm["shape"])
        zeros = unpack_uint(_need(t, "zeros"), int(zm["bits"]), n).reshape(zm["shape"]).float()
    elif zm is not None:
        zeros = _need(t, "zeros")
    second = {}
    for name, m in meta.get("second_order", {}).items():
        prefix = f"second_order{SEP}{name}{SEP}"
        second[name] = decode(m, {k[len(prefix):]: v for k, v in t.items() if k.startswith(prefix)})
    return QuantizedWeight("uniform", shape, _codes(_need(t, "codes"), bits, shape), bits,
                           scales=t.get("scales"), zeros=zeros, group_size=meta.get("group_size"),
                           g_idx=_decode_groups(meta, t), zero_bits=meta.get("zero_bits"), second_order=second)


def _encode_binary(qw: QuantizedWeight) -> tuple[Meta, Tensors]:
    bits = _int_bits(qw)
    assert qw.alphas is not None and qw.offsets is not None
    meta: Meta = {"bits": bits}
    out: Tensors = {"codes": pack(qw.codes.cpu(), bits), "alphas": store_float(qw.alphas),
                    "offsets": store_float(qw.offsets)}
    _encode_groups(qw, meta, out)
    return meta, out


def _decode_binary(meta: Meta, t: Tensors) -> QuantizedWeight:
    shape = (int(meta["shape"][0]), int(meta["shape"][1]))
    bits = int(meta["bits"])
    return QuantizedWeight("binary", shape, _codes(_need(t, "codes"), bits, shape), bits,
                           group_size=meta.get("group_size"), g_idx=_decode_groups(meta, t),
                           alphas=_need(t, "alphas"), offsets=_need(t, "offsets"))


def _encode_table(qw: QuantizedWeight) -> tuple[Meta, Tensors]:
    assert qw.tables is not None
    d_out, d_in = qw.shape
    per_column = isinstance(qw.bits, Tensor)
    widths = qw.bits.cpu().long() if isinstance(qw.bits, Tensor) else torch.full((d_in,), int(qw.bits))
    meta: Meta = {"bits": "per_column" if per_column else int(qw.bits), "table_size": int(qw.tables.shape[1])}
    out: Tensors = {}
    if per_column:
        out["widths"] = pack_uint(widths, 4)
    codes, tables = qw.codes.cpu(), qw.tables.detach().cpu()
    for b in sorted(set(widths.tolist())):
        cols = (widths == b).nonzero().squeeze(1)
        out[f"codes{SEP}{b}"] = pack(codes[:, cols].T, b)
        out[f"tables{SEP}{b}"] = store_float(tables[cols, : 1 << b])
    return meta, out


def _decode_table(meta: Meta, t: Tensors) -> QuantizedWeight:
    d_out, d_in = int(meta["shape"][0]), int(meta["shape"][1])
    per_column = meta["bits"] == "per_column"
    widths = unpack_uint(_need(t, "widths"), 4, d_in) if per_column else torch.full((d_in,), int(meta["bits"]))
    codes = torch.empty(d_out, d_in, dtype=torch.uint8)
    tables: Tensor | None = None
    for b in sorted(set(widths.tolist())):
        cols = (widths == b).nonzero().squeeze(1)
        codes[:, cols] = _codes(_need(t, f"codes{SEP}{b}"), b, (cols.numel(), d_out)).T
        tb = _need(t, f"tables{SEP}{b}")
        if tables is None:
            tables = torch.zeros(d_in, int(meta["table_size"]), dtype=tb.dtype)
        tables[cols, : 1 << b] = tb.to(tables.dtype)
    bits: int | Tensor = widths if per_column else int(meta["bits"])
    return QuantizedWeight("table", (d_out, d_in), codes, bits, tables=tables)


def _encode_additive(qw: QuantizedWeight) -> tuple[Meta, Tensors]:
    assert qw.codebooks is not None and qw.scales is not None and qw.group_size
    bits = _int_bits(qw)
    meta: Meta = {"bits": bits, "group_size": int(qw.group_size), "n_codebooks": int(qw.codes.shape[-1])}
    return meta, {"codes": pack_uint(qw.codes.cpu(), bits), "codebooks": store_float(qw.codebooks),
                  "scales": store_float(qw.scales)}


def _decode_additive(meta: Meta, t: Tensors) -> QuantizedWeight:
    d_out, d_in = int(meta["shape"][0]), int(meta["shape"][1])
    bits, g, m = int(meta["bits"]), int(meta["group_size"]), int(meta["n_codebooks"])
    shape = (d_out, d_in // g, m)
    try:
        codes = unpack_uint(_need(t, "codes"), bits, math.prod(shape)).reshape(shape)
    except (ValueError, RuntimeError) as e:
        raise StorageError(f"codes: {e}") from None
    return QuantizedWeight("additive", (d_out, d_in), codes, bits, scales=_need(t, "scales"), group_size=g,
                           codebooks=_need(t, "codebooks"))


register_codec("uniform", Codec(_encode_uniform, _decode_uniform))
register_codec("binary", Codec(_encode_binary, _decode_binary))
register_codec("table", Codec(_encode_table, _decode_table))
register_codec("additive", Codec(_encode_additive, _decode_additive))


def _encode_outliers(o: SparseOutliers, shape: tuple[int, int]) -> tuple[Meta, Tensors]:
    """CSR: row pointers ``(d_out + 1,)`` at ``ceil(log2(nnz + 1))`` bits, column indices at
    ``ceil(log2 d_in)`` bits, values in row-major order."""
    d_out, d_in = shape
    rows, cols = o.rows.cpu().long(), o.cols.cpu().long()
    order = torch.argsort(rows * d_in + cols)
    indptr = torch.zeros(d_out + 1, dtype=torch.int64)
    indptr[1:] = torch.bincount(rows, minlength=d_out).cumsum(0)
    meta = {"nnz": o.nnz, "value_bits": o.value_bits}
    return meta, {f"outliers{SEP}indptr": pack_uint(indptr, uint_bits(o.nnz + 1)),
                  f"outliers{SEP}cols": pack_uint(cols[order], uint_bits(d_in)),
                  f"outliers{SEP}values": store_float(o.values[order.to(o.values.device)])}


def _decode_outliers(meta: Meta, t: Tensors, shape: tuple[int, int]) -> SparseOutliers:
    d_out, d_in = shape
    nnz = int(meta["nnz"])
    indptr = unpack_uint(_need(t, f"outliers{SEP}indptr"), uint_bits(nnz + 1), d_out + 1)
    cols = unpack_uint(_need(t, f"outliers{SEP}cols"), uint_bits(d_in), nnz)
    rows = torch.repeat_interleave(torch.arange(d_out), indptr.diff())
    values = _need(t, f"outliers{SEP}values")
    if rows.numel() != nnz or values.numel() != nnz:
        raise StorageError(f"outliers: {rows.numel()} row entries and {values.numel()} values for nnz {nnz}")
    return SparseOutliers(rows, cols, values, int(meta["value_bits"]))


def encode(qw: QuantizedWeight) -> tuple[Meta, Tensors]:
    """Storage of ``qw``: JSON-able meta (``format``, ``shape``, widths, ...) and named tensors (CPU)."""
    try:
        codec = CODECS[qw.format]
    except KeyError:
        raise ValueError(f"no storage layout for format {qw.format!r}; known: {sorted(CODECS)}") from None
    meta, tensors = codec.encode(qw)
    meta = {"format": qw.format, "shape": list(qw.shape), **meta}
    if qw.outliers is not None and qw.outliers.nnz:
        meta["outliers"], ts = _encode_outliers(qw.outliers, qw.shape)
        tensors.update(ts)
    return meta, tensors


def decode(meta: Meta, tensors: Tensors) -> QuantizedWeight:
    """Inverse of :func:`encode`; :class:`StorageError` names what is missing or inconsistent."""
    try:
        codec = CODECS[meta["format"]]
    except KeyError:
        raise StorageError(f"unknown stored format {meta.get('format')!r}; known: {sorted(CODECS)}") from None
    qw = codec.decode(meta, tensors)
    if "outliers" in meta:
        qw.outliers = _decode_outliers(meta["outliers"], tensors, qw.shape)
    return qw


def nbytes(tensors: Tensors) -> int:
    """Bytes of the tensor data (what a safetensors file holds besides its header)."""
    return sum(t.numel() * t.element_size() for t in tensors.values())
