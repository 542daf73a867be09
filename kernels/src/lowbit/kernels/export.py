"""Export lowbit checkpoints to the standard formats other runtimes load: GPTQ and AQLM.

    python -m lowbit.kernels.export gptq SRC DST [--checkpoint-format gptq|gptq_v2] [--overwrite]
    python -m lowbit.kernels.export aqlm SRC DST [--overwrite]

**GPTQ** (AutoGPTQ / GPTQModel, ``quant_method "gptq"``), for checkpoints whose quantized layers are
all ``uniform`` with integer zeros, one width b in {2, 4, 8} and one group size. Per linear, with
``d_in`` inputs, ``d_out`` outputs, ``G`` groups and ``p = 32 / b`` values per int32:

- ``qweight`` int32 ``(d_in / p, d_out)``: ``qweight[i, n] = sum_k q[n, p i + k] << (b k)`` (codes packed
  along the input dimension, low bits first);
- ``qzeros`` int32 ``(G, d_out / p)``: ``qzeros[g, j] = sum_k z'[g, p j + k] << (b k)`` with ``z' = z - 1``
  in the original AutoGPTQ layout (``checkpoint_format "gptq"``, called v1 by GPTQModel: readers add 1
  back) or ``z' = z`` for GPTQModel's ``"gptq_v2"``;
- ``scales`` fp16 ``(G, d_out)``; ``g_idx`` int32 ``(d_in,)``, the group of each input column;

so that ``W[n, i] = scales[g_idx[i], n] * (q[n, i] - z[g_idx[i], n])``: exactly lowbit's weight.
``desc_act`` is true when some layer has a non-contiguous ``g_idx`` (act-order), ``sym`` false
(min-max grids are asymmetric), ``group_size`` -1 for one group per row. A zero point of 0 has no
v1 encoding (``0 - 1`` wraps to ``2^b - 1``, read back as ``2^b``): v1 export refuses it and names
``gptq_v2``. 3-bit GPTQ packs codes across int32 boundaries and is not offered.

**AQLM** (``quant_method "aqlm"``, the ``aqlm`` package and transformers' integration), for
checkpoints whose quantized layers are all ``additive`` with one (M, B, g): ``codes`` ``(d_out, d_in /
g, M)`` as signed integers of B bits (int8 for B <= 8, int16 up to 16; values ``>= 2^(B-1)`` stored minus
``2^B``, as ``aqlm.utils.pack_int_data``), ``codebooks`` fp16 ``(M, 2^B, 1, g)``, ``scales`` fp16
``(d_out, 1, 1, 1)``; ``out_group_size`` 1 and ``linear_weights_not_to_quantize`` the model's other
linear weights.

Refused, with the reason: table (CLAQ, CMPQ), binary (GPTQT) and second-order (SpQR) layers, sparse
outliers, continuous zeros, mixed widths or group sizes, and scales that fp16 does not hold exactly.
The export is written into a temporary sibling directory renamed at the end (nothing half-written);
an existing destination is refused unless ``overwrite``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lowbit.core.checkpoint import CheckpointError, check_destination, layer_tensors, read_config, read_tensors
from lowbit.core.formats import QuantizedWeight
from lowbit.core.storage import StorageError, decode

Tensors = dict[str, Tensor]


class ExportError(ValueError):
    """A checkpoint (or one of its layers) that the requested format cannot represent."""


def pack_int32(values: Tensor, bits: int, dim: int) -> Tensor:
    """Pack non-negative integers below ``2^bits`` (bits dividing 32) along ``dim``, ``32 / bits`` per
    int32, low bits first: ``out[.., i, ..] = sum_k values[.., p i + k, ..] << (bits k)`` (two's
    complement int32)."""
    p = 32 // bits
    v = values.movedim(dim, 0).to(torch.int64)
    if v.shape[0] % p:
        raise ExportError(f"dimension {v.shape[0]} is not a multiple of {p} ({bits}-bit values per int32)")
    v = v.reshape(v.shape[0] // p, p, *v.shape[1:])
    shifts = (torch.arange(p, dtype=torch.int64) * bits).reshape(1, p, *([1] * (v.dim() - 2)))
    packed = (v << shifts).sum(1)
    packed = torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)
    return packed.movedim(0, dim).contiguous()


def unpack_int32(packed: Tensor, bits: int, dim: int) -> Tensor:
    """Inverse of :func:`pack_int32` (int64 values), as GPTQ readers unpack: ``(x >> (bits k)) & mask``."""
    p = 32 // bits
    v = packed.movedim(dim, 0).to(torch.int64) & 0xFFFFFFFF
    shifts = (torch.arange(p, dtype=torch.int64) * bits).reshape(1, p, *([1] * (v.dim() - 1)))
    out = (v.unsqueeze(1) >> shifts) & ((1 << bits) - 1)
    return out.reshape(v.shape[0] * p, *v.shape[1:]).movedim(0, dim)


def _fp16(t: Tensor, what: str) -> Tensor:
    half = t.detach().cpu().half()
    if not torch.equal(half.float(), t.detach().cpu().float()):
        raise ExportError(f"{what}: values are not exactly representable in fp16 (a checkpoint written before "
                          "scales were rounded to fp16); re-quantize to export")
    return half


def gptq_layer(qw: QuantizedWeight, name: str, v1: bool = True) -> Tensors:
    """GPTQ tensors (module docstring) of one uniform layer."""
    if qw.format != "uniform":
        raise ExportError(f"layer {name}: format {qw.format!r} has no GPTQ form (only uniform grids)")
    if qw.outliers is not None and qw.outliers.nnz:
        raise ExportError(f"layer {name}: sparse outliers have no GPTQ form")
    if qw.second_order:
        raise ExportError(f"layer {name}: second-order (SpQR) statistics have no GPTQ form")
    if not isinstance(qw.bits, int) or qw.bits not in (2, 4, 8):
        raise ExportError(f"layer {name}: {qw.bits}-bit codes; GPTQ export packs 2, 4 or 8 bits")
    if qw.scales is None or qw.zeros is None or qw.zero_bits not in (None, qw.bits):
        raise ExportError(f"layer {name}: GPTQ needs integer zero points at the code width")
    z = qw.zeros.detach().cpu()
    if not torch.equal(z, z.round()):
        raise ExportError(f"layer {name}: continuous zero points have no GPTQ form")
    z = z.round().long().T  # (G, d_out)
    if v1:
        if bool((z == 0).any()):
            raise ExportError(f"layer {name}: a zero point of 0 has no encoding in the v1 'gptq' layout "
                              "(stored minus one); export with checkpoint_format 'gptq_v2'")
        z = z - 1
    return {"qweight": pack_int32(qw.codes.detach().cpu().T, qw.bits, 0),
            "qzeros": pack_int32(z, qw.bits, 1),
            "scales": _fp16(qw.scales.T.contiguous(), f"layer {name} scales"),
            "g_idx": qw.group_index().cpu().to(torch.int32)}


def aqlm_layer(qw: QuantizedWeight, name: str) -> Tensors:
    """AQLM tensors (module docstring) of one additive layer."""
    if qw.format != "additive":
        raise ExportError(f"layer {name}: format {qw.format!r} has no AQLM form (only additive codebooks)")
    if qw.outliers is not None and qw.outliers.nnz:
        raise ExportError(f"layer {name}: sparse outliers have no AQLM form")
    assert qw.codebooks is not None and qw.scales is not None
    bits = int(qw.bits)
    codes = qw.codes.detach().cpu().to(torch.int64)
    codes = torch.where(codes >= 2 ** (bits - 1), codes - 2**bits, codes)
    m, k, g = qw.codebooks.shape
    return {"codes": codes.to(torch.int8 if bits <= 8 else torch.int16).contiguous(),
            "codebooks": _fp16(qw.codebooks, f"layer {name} codebooks").reshape(m, k, 1, g).contiguous(),
            "scales": _fp16(qw.scales.reshape(-1), f"layer {name} scales").reshape(-1, 1, 1, 1).contiguous()}


def _layers(src: Path) -> tuple[dict[str, Any], dict[str, Any], Tensors, dict[str, QuantizedWeight]]:
    config, qc = read_config(src)
    tensors = read_tensors(src)
    qws = {}
    for name, meta in qc["layers"].items():
        try:
            qws[name] = decode(meta, layer_tensors(tensors, name))
        except StorageError as e:
            raise CheckpointError(f"layer {name}: {e}") from None
    return config, qc, tensors, qws


def _rest(tensors: Tensors, layers: dict[str, Any]) -> Tensors:
    """Every tensor that is not a quantized layer's storage (embeddings, norms, biases, head)."""
    return {k: v for k, v in tensors.items() if not (k.rpartition(".")[0] in layers and not k.endswith(".bias"))}


def _write(src: Path, dst: Path, overwrite: bool, config: dict[str, Any], tensors: Tensors) -> Path:
    """``config.json``, one ``model.safetensors`` and the tokenizer files, atomically into ``dst``."""
    from safetensors.torch import save_file

    dst = check_destination(dst, overwrite).resolve()
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        seen: dict[int, str] = {}
        unique = {}
        # tied tensors once, under the model's own name (transformers re-ties the head from the config)
        for k, v in sorted(tensors.items(), key=lambda kv: (kv[0].startswith("lm_head"), kv[0])):
            if v.data_ptr() in seen and v.numel():
                continue
            seen[v.data_ptr()] = k
            unique[k] = v.contiguous()
        save_file(unique, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        for f in src.iterdir():
            if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "generation_config",
                                  "chat_template")):
                shutil.copy2(f, tmp / f.name)
        if dst.exists():
            old = dst.parent / f".{dst.name}.old-{os.getpid()}"
            dst.rename(old)
            tmp.rename(dst)
            shutil.rmtree(old)
        else:
            tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _one(values: dict[str, Any], what: str) -> Any:
    kinds = set(values.values())
    if len(kinds) != 1:
        raise ExportError(f"layers differ in {what} ({sorted(map(str, kinds))}); the format has one global setting")
    return kinds.pop()


def export_gptq(src: str | Path, dst: str | Path, *, checkpoint_format: str = "gptq",
                overwrite: bool = False) -> Path:
    """Write lowbit checkpoint ``src`` as a GPTQ checkpoint ``dst`` (module docstring); returns ``dst``.

    ``checkpoint_format``: ``"gptq"`` (AutoGPTQ's layout, zeros minus one, what transformers/optimum
    and most runtimes read) or ``"gptq_v2"`` (GPTQModel, zeros as they are).
    """
    if checkpoint_format not in ("gptq", "gptq_v2"):
        raise ValueError(f"checkpoint_format must be 'gptq' or 'gptq_v2', got {checkpoint_format!r}")
    src = Path(src)
    check_destination(dst, overwrite)
    config, qc, tensors, qws = _layers(src)
    out = _rest(tensors, qc["layers"])
    desc_act = False
    for name, qw in qws.items():
        for k, v in gptq_layer(qw, name, v1=checkpoint_format == "gptq").items():
            out[f"{name}.{k}"] = v
        g = qw.group_index().cpu()
        desc_act |= not torch.equal(g, torch.sort(g).values)
    bits = _one({n: qw.bits for n, qw in qws.items()}, "code width")
    gs = _one({n: qw.group_size or -1 for n, qw in qws.items()}, "group size")
    config["quantization_config"] = {"quant_method": "gptq", "bits": bits, "group_size": gs, "desc_act": desc_act,
                                     "sym": False, "true_sequential": True, "checkpoint_format": checkpoint_format,
                                     "lowbit": {"recipe": qc.get("recipe"), "bit_report": qc.get("bit_report")}}
    return _write(src, Path(dst), overwrite, config, out)


def export_aqlm(src: str | Path, dst: str | Path, *, overwrite: bool = False) -> Path:
    """Write lowbit checkpoint ``src`` (additive layers) as an AQLM checkpoint ``dst``; returns ``dst``."""
    src = Path(src)
    check_destination(dst, overwrite)
    config, qc, tensors, qws = _layers(src)
    for name, qw in qws.items():
        if qw.format != "additive":
            raise ExportError(f"layer {name}: format {qw.format!r} has no AQLM form (only additive codebooks)")
    m = _one({n: int(qw.codes.shape[-1]) for n, qw in qws.items()}, "number of codebooks")
    b = _one({n: int(qw.bits) for n, qw in qws.items()}, "codebook bits")
    g = _one({n: int(qw.group_size or 0) for n, qw in qws.items()}, "group size")
    out = _rest(tensors, qc["layers"])
    for name, qw in qws.items():
        for k, v in aqlm_layer(qw, name).items():
            out[f"{name}.{k}"] = v
    others = sorted(k for k in out if k.endswith(".weight") and out[k].dim() == 2
                    and not k.startswith(tuple(f"{n}." for n in qws)) and "embed" not in k)
    if config.get("tie_word_embeddings") and "lm_head.weight" not in others:
        others.append("lm_head.weight")
    config["quantization_config"] = {"quant_method": "aqlm", "in_group_size": g, "out_group_size": 1,
                                     "num_codebooks": m, "nbits_per_codebook": b,
                                     "linear_weights_not_to_quantize": others,
                                     "lowbit": {"recipe": qc.get("recipe"), "bit_report": qc.get("bit_report")}}
    return _write(src, Path(dst), overwrite, config, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lowbit.kernels.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("format", choices=["gptq", "aqlm"])
    p.add_argument("src", help="lowbit checkpoint directory")
    p.add_argument("dst", help="destination directory")
    p.add_argument("--checkpoint-format", default="gptq", choices=["gptq", "gptq_v2"], help="GPTQ layout")
    p.add_argument("--overwrite", action="store_true", help="replace an existing destination")
    args = p.parse_args(argv)
    try:
        if args.format == "gptq":
            out = export_gptq(args.src, args.dst, checkpoint_format=args.checkpoint_format, overwrite=args.overwrite)
        else:
            out = export_aqlm(args.src, args.dst, overwrite=args.overwrite)
    except (ExportError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
