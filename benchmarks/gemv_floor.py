"""Where the uniform GEMV's time goes, per launch configuration, on one GPU in one run (issue 9).

    python benchmarks/gemv_floor.py --json gemv_floor.json        # on a GPU (about a minute on an H100)
    python benchmarks/gemv_floor.py --quick                       # CPU, Triton interpreter, tiny shapes

For each layer (d_out x d_in), code width and GEMV configuration (``common.GEMV_CONFIGS`` without split
K), three kernels with the same grid and the same ``(BLOCK_N, GPI, WB)`` word tiles, timed like
``benchmarks/gpu_kernels.py`` (rotated weight copies past L2, calls in one CUDA graph):

- ``empty_us``: the grid launched with a loop that loads nothing (launch, scheduling, the store);
- ``stream_us``: the packed words streamed and xor-ed (one integer op a word: the memory floor of this
  tiling, without unpacking, activations or scales);
- ``kernel_us``: ``lowbit.kernels.triton.uniform.run`` at that configuration.

``floor_us`` is the prepared weight's bytes over the copy bandwidth measured in the same run.
``kernel_us - stream_us`` is what unpacking and multiplying cost on top of moving the words.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch
import triton
import triton.language as tl
from gpu_kernels import Timer, copy_bandwidth, map_tensors, n_copies, state_bytes


@triton.jit
def stream_kernel(Q, Y, N, row_words, BLOCK_N: tl.constexpr, GPI: tl.constexpr, WB: tl.constexpr,
                  LOAD: tl.constexpr):
    """``Y[n] = xor_k Q[n, k]`` over a ``(N, row_words)`` int32 tensor, ``(BLOCK_N, GPI, WB)`` words an
    iteration as the uniform GEMV loads them (``LOAD`` false: the same loop without loads)."""
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = tl.minimum(offs_n, N - 1)
    col = tl.arange(0, GPI)[:, None] * WB + tl.arange(0, WB)[None, :]
    acc = tl.zeros((BLOCK_N, GPI, WB), dtype=tl.int32)
    for c0 in range(0, row_words, GPI * WB):
        if LOAD:
            acc ^= tl.load(Q + rows[:, None, None] * row_words + (c0 + col)[None, :, :],
                           mask=(c0 + col < row_words)[None, :, :], other=0)
        else:
            acc ^= c0
    out = tl.xor_sum(tl.xor_sum(acc, axis=2), axis=1)
    tl.store(Y + offs_n, out, mask=offs_n < N)


def main() -> None:
    from lowbit.kernels.triton import common, uniform
    from lowbit.kernels.triton.random_weights import random_uniform

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--replays", type=int, default=20)
    a = p.parse_args()
    device = torch.device("cpu" if a.quick else "cuda")
    timer = Timer(device, a.replays)
    bw = copy_bandwidth(device, a.quick)
    l2 = torch.cuda.get_device_properties(device).L2_cache_size if device.type == "cuda" else 1 << 20
    shapes = [(256, 256)] if a.quick else [(4096, 4096), (4096, 11008)]
    configs = [c for c in common.GEMV_CONFIGS if c.split_k == 1]
    rows = []
    print("| shape | bits | config | floor us | empty us | stream us | kernel us |\n|---|---|---|---|---|---|---|")
    for d_out, d_in in shapes:
        x = torch.randn(1, d_in, device=device).half()
        for bits in (4, 2):
            st = uniform.prepare(random_uniform(d_out, d_in, bits, 128, 0, device), device)
            nb = state_bytes(st)
            states = [st] + [map_tensors(st, torch.clone) for _ in range(n_copies(nb, l2) - 1)]
            q = [s.planes[0] for s in states]
            y = torch.empty(d_out, dtype=torch.int32, device=device)
            per = common.PER[bits]
            wb = st.block // per
            for c in configs:
                gpi = common.blocks_per_iter(c, per, st.block, d_in // st.block, 1)
                grid = (triton.cdiv(d_out, c.block_n),)

                def stream(w: torch.Tensor, load: bool, c=c, gpi=gpi, grid=grid) -> None:
                    stream_kernel[grid](w, y, d_out, w.shape[1], BLOCK_N=c.block_n, GPI=gpi, WB=wb, LOAD=load,
                                        num_warps=c.num_warps, num_stages=c.num_stages)

                row = {"shape": [d_out, d_in], "bits": bits, "config": dataclasses.asdict(c),
                       "floor_us": 1e6 * nb / bw,
                       "empty_us": timer([lambda w=w: stream(w, False) for w in q])[0],
                       "stream_us": timer([lambda w=w: stream(w, True) for w in q])[0],
                       "kernel_us": timer([lambda s=s, c=c: uniform.run(s, x, c) for s in states])[0]}
                rows.append(row)
                print(f"| {d_out}x{d_in} | {bits} | {dataclasses.astuple(c)} | {row['floor_us']:.1f} | "
                      f"{row['empty_us']:.1f} | {row['stream_us']:.1f} | {row['kernel_us']:.1f} |", flush=True)
                if a.json:
                    with open(a.json, "w") as f:
                        json.dump({"copy_bandwidth": bw, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
