"""Bits per weight of AQLM settings on SmolLM2-135M's 210 linear layers, from the accounting function
(codes + codebooks + scales), without quantizing anything: the containers hold zeros of the right shapes.

    python scripts/aqlm_bits.py
"""

from __future__ import annotations

import torch

from lowbit.core.bits import model_bit_report
from lowbit.core.formats import QuantizedWeight

# q, o, k, v, gate, up, down of one SmolLM2-135M block (d_out, d_in); 30 blocks
SHAPES = [(576, 576), (576, 576), (192, 576), (192, 576), (1536, 576), (1536, 576), (576, 1536)]


def main() -> None:
    for M, B, g in ((2, 8, 8), (1, 8, 8), (1, 16, 8)):
        qws = [QuantizedWeight("additive", (o, i), torch.zeros(o, i // g, M, dtype=torch.int32), B,
                               scales=torch.zeros(o), group_size=g, codebooks=torch.zeros(M, 1 << B, g))
               for _ in range(30) for o, i in SHAPES]
        r = model_bit_report(qws)
        parts = ", ".join(f"{k} {v:.4f}" for k, v in r.per_weight().items() if v)
        print(f"{M}x{B} g{g}: {r.bits_per_weight:.4f} bits per weight ({parts})")


if __name__ == "__main__":
    main()
