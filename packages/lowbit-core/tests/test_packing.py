"""pack/unpack: exact round trip for every width, exact byte count, range checks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.core.packing import SUPPORTED_BITS, pack, packed_nbytes, unpack


@settings(max_examples=200, deadline=None)
@given(bits=st.sampled_from(SUPPORTED_BITS), n=st.integers(0, 300), seed=st.integers(0, 2**31 - 1))
def test_round_trip(bits: int, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 1 << bits, (n,), generator=g)
    packed = pack(codes, bits)
    assert packed.dtype == torch.uint8
    assert packed.numel() == packed_nbytes(n, bits) == (n * bits + 7) // 8
    assert torch.equal(unpack(packed, bits, n), codes)


def test_layout_is_little_endian_stream() -> None:
    # two 4-bit codes 0x1, 0x2 -> one byte 0x21; three 3-bit codes 1,2,3 -> 0b011_010_001
    assert pack(torch.tensor([1, 2]), 4).tolist() == [0x21]
    assert pack(torch.tensor([1, 2, 3]), 3).tolist() == [0b11010001, 0]


@pytest.mark.parametrize("bits", [0, 9, 12, 32])
def test_unsupported_width(bits: int) -> None:
    with pytest.raises(ValueError, match="code width"):
        pack(torch.zeros(4, dtype=torch.int64), bits)


def test_out_of_range_codes() -> None:
    with pytest.raises(ValueError, match="out of range"):
        pack(torch.tensor([4]), 2)
    with pytest.raises(ValueError, match="cannot hold"):
        unpack(torch.zeros(1, dtype=torch.uint8), 4, 3)
