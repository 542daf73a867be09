"""Pure-torch packing of integer codes: the ground truth every kernel's layout is tested against.

Codes of width ``bits`` (1..8 or 16) are laid out little-endian in a flat bit stream: code ``k``
occupies bits ``[k*bits, (k+1)*bits)`` of the stream, and byte ``j`` of the output holds stream
bits ``[8j, 8j+8)``. ``pack(codes, b)`` has ``ceil(n*b/8)`` bytes for ``n`` codes.
"""

from __future__ import annotations

import torch
from torch import Tensor

SUPPORTED_BITS = (1, 2, 3, 4, 5, 6, 7, 8, 16)


def check_bits(bits: int) -> None:
    """Raise ``ValueError`` unless ``bits`` is a packable code width."""
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"code width must be one of {SUPPORTED_BITS}, got {bits}")


def packed_nbytes(n: int, bits: int) -> int:
    """Bytes that ``n`` codes of ``bits`` bits occupy: ceil(n * bits / 8)."""
    return (n * bits + 7) // 8


def pack(codes: Tensor, bits: int) -> Tensor:
    """Pack integer codes in ``[0, 2^bits)`` (any shape, flattened) into a uint8 tensor.

    Args:
        codes: integer tensor, values in ``[0, 2**bits)``.
        bits: code width, one of 1..8 or 16.
    Returns:
        uint8 tensor of ``packed_nbytes(codes.numel(), bits)`` bytes.
    """
    check_bits(bits)
    flat = codes.reshape(-1).to(torch.int64)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= 1 << bits):
        raise ValueError(f"codes out of range for {bits} bits")
    n = flat.numel()
    shifts = torch.arange(bits, device=flat.device)
    stream = ((flat[:, None] >> shifts) & 1).reshape(-1)  # (n*bits,) bit stream
    pad = (-stream.numel()) % 8
    stream = torch.cat([stream, stream.new_zeros(pad)]).reshape(-1, 8)
    weights = (1 << torch.arange(8, device=flat.device))
    out = (stream * weights).sum(1).to(torch.uint8)
    assert out.numel() == packed_nbytes(n, bits)
    return out


def unpack(packed: Tensor, bits: int, n: int) -> Tensor:
    """Inverse of :func:`pack`: the first ``n`` codes as an int64 tensor of shape ``(n,)``."""
    check_bits(bits)
    if packed.numel() < packed_nbytes(n, bits):
        raise ValueError(f"{packed.numel()} bytes cannot hold {n} codes of {bits} bits")
    stream = ((packed.to(torch.int64)[:, None] >> torch.arange(8, device=packed.device)) & 1)
    stream = stream.reshape(-1)[: n * bits].reshape(n, bits)
    return (stream << torch.arange(bits, device=packed.device)).sum(1)
