"""Uniform (affine) grids: choose parameters, quantize, dequantize.

In the style of torchao's ``choose_qparams_affine`` / ``quantize_affine``: for a b-bit asymmetric
grid with scale s and integer zero z,

    q = clamp(round(w / s) + z, 0, 2^b - 1),        w_hat = s * (q - z).

Min-max parameters follow GPTQ's reference quantizer (arXiv 2210.17323): the range is widened to
contain 0, s = (max - min) / (2^b - 1), z = round(-min / s); an all-zero row gets s = 1.
With ``zero_in_range=False`` (SpQR, arXiv 2306.03078: tiny groups whose range need not contain 0,
and zeros that are themselves quantized later) the range is exactly [min, max] and z = -min / s is
not rounded; codes are then ``clamp(round(w / s + z), 0, 2^b - 1)``
(:func:`quantize_affine_continuous`), and a constant row gets s = 1, z = -min, so that it is
reproduced exactly (code 0).

Parameters are rounded to their storage dtype when they are computed (``dtype``, fp16 by default:
the 16 bits per scale and per continuous zero that :func:`lowbit.core.bits.bit_report` charges), so
that the grid the quantizer uses is exactly the grid a checkpoint stores at that width
(:func:`round_to_dtype`); an integer zero is then derived from the rounded scale.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_width(bits: int) -> None:
    """Raise ``ValueError`` unless ``bits`` is a supported grid width (1..8)."""
    if not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an integer in 1..8, got {bits!r}")


def round_to_dtype(t: Tensor, dtype: torch.dtype | None, *, up: bool = False) -> Tensor:
    """``t`` rounded to a value representable in ``dtype``, kept in ``t``'s dtype; ``dtype=None``
    returns ``t``.

    Nearest (half to even) by default; ``up=True`` takes the smallest representable value ``>= t``
    (scales: a min-max grid then still covers its range, and a positive scale never becomes zero).
    Values beyond the dtype's range saturate at its largest finite value instead of becoming infinite.
    """
    if dtype is None or t.dtype == dtype:
        return t
    big = torch.finfo(dtype).max
    out = t.clamp(-big, big).to(dtype)
    if up:
        below = (out.to(t.dtype) < t) & (out < big)
        out = torch.where(below, torch.nextafter(out, torch.full_like(out, float("inf"))), out)
    return out.to(t.dtype)


def minmax_params(w: Tensor, bits: int, *, zero_in_range: bool = True,
                  dtype: torch.dtype | None = torch.float16) -> tuple[Tensor, Tensor]:
    """Asymmetric min-max parameters per row of ``w``.

    Args:
        w: ``(rows, n)`` values; each row gets its own grid.
        bits: grid width.
        zero_in_range: GPTQ's convention (default): the range contains 0 and the zero is an integer.
            False: the range is ``[min, max]`` and the zero is continuous (module docstring).
        dtype: storage dtype of the scale (and of a continuous zero): the scale is rounded up to it
            (so the grid still spans the range), a continuous zero to nearest (:func:`round_to_dtype`),
            before the integer zero is derived; None keeps ``w``'s precision.
    Returns:
        ``scale`` (rows,) float and ``zero`` (rows,) float: integers in ``[0, 2^b - 1]`` by default,
        any real with ``zero_in_range=False``; both in ``w``'s dtype, exactly representable in ``dtype``.
    """
    maxq = (1 << bits) - 1
    if not zero_in_range:
        lo, hi = w.amin(dim=1), w.amax(dim=1)
        flat = hi == lo
        scale = round_to_dtype(torch.where(flat, torch.ones_like(lo), (hi - lo) / maxq), dtype, up=True)
        return scale, round_to_dtype(-lo / scale, dtype)
    wmin = w.amin(dim=1).clamp(max=0)
    wmax = w.amax(dim=1).clamp(min=0)
    degenerate = wmax == wmin
    wmin = torch.where(degenerate, wmin - 1, wmin)
    wmax = torch.where(degenerate, wmax + 1, wmax)
    scale = round_to_dtype((wmax - wmin) / maxq, dtype, up=True)
    zero = torch.round(-wmin / scale).clamp(0, maxq)
    return scale, zero


def quantize_affine(w: Tensor, scale: Tensor, zero: Tensor, bits: int) -> Tensor:
    """Integer codes ``clamp(round(w / s) + z, 0, 2^b - 1)``; ``scale``/``zero`` broadcast to ``w``."""
    return torch.clamp(torch.round(w / scale) + zero, 0, (1 << bits) - 1)


def quantize_affine_continuous(w: Tensor, scale: Tensor, zero: Tensor, bits: int) -> Tensor:
    """Integer codes ``clamp(round(w / s + z), 0, 2^b - 1)`` for a continuous (unrounded) zero ``z``."""
    return torch.clamp(torch.round(w / scale + zero), 0, (1 << bits) - 1)


def dequantize_affine(q: Tensor, scale: Tensor, zero: Tensor) -> Tensor:
    """Values ``s * (q - z)``."""
    return scale * (q - zero)


def fake_quantize(w: Tensor, scale: Tensor, zero: Tensor, bits: int) -> Tensor:
    """Nearest grid value: ``dequantize_affine(quantize_affine(w))``."""
    return dequantize_affine(quantize_affine(w, scale, zero, bits), scale, zero)
