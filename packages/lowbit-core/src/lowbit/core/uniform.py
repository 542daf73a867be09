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
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_width(bits: int) -> None:
    """Raise ``ValueError`` unless ``bits`` is a supported grid width (1..8)."""
    if not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an integer in 1..8, got {bits!r}")


def minmax_params(w: Tensor, bits: int, *, zero_in_range: bool = True) -> tuple[Tensor, Tensor]:
    """Asymmetric min-max parameters per row of ``w``.

    Args:
        w: ``(rows, n)`` values; each row gets its own grid.
        bits: grid width.
        zero_in_range: GPTQ's convention (default): the range contains 0 and the zero is an integer.
            False: the range is ``[min, max]`` and the zero is continuous (module docstring).
    Returns:
        ``scale`` (rows,) float and ``zero`` (rows,) float: integers in ``[0, 2^b - 1]`` by default,
        any real with ``zero_in_range=False``.
    """
    maxq = (1 << bits) - 1
    if not zero_in_range:
        lo, hi = w.amin(dim=1), w.amax(dim=1)
        flat = hi == lo
        scale = torch.where(flat, torch.ones_like(lo), (hi - lo) / maxq)
        return scale, -lo / scale
    wmin = w.amin(dim=1).clamp(max=0)
    wmax = w.amax(dim=1).clamp(min=0)
    degenerate = wmax == wmin
    wmin = torch.where(degenerate, wmin - 1, wmin)
    wmax = torch.where(degenerate, wmax + 1, wmax)
    scale = (wmax - wmin) / maxq
    zero = torch.round(-wmin / scale)
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
