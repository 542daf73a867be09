"""Final AQLM error against the number of Lloyd iterations of the k-means initialisation, on the CPU.

    python benchmarks/kmeans_iterations.py 1024 1024 1 12 2,5,8,10,25

One layer and synthetic Hessian as in ``benchmarks/aqlm_layer.py`` (d_out x d_in, M codebooks of 2^B
entries, groups of 8), quantized by ``quantize_additive`` with each ``kmeans_iters``; a 1024^2 1x12
layer has the same 32 groups per codeword as a 4096^2 1x16 one, where the k-means work budget
(2^40 distance evaluations) allows 8 iterations. Prints seconds, rounds, and the initial and final
relative errors.
"""

from __future__ import annotations

import sys
import time

from aqlm_layer import layer

from lowbit.cluster import quantize_additive


def main() -> None:
    d_out, d_in, m, b = map(int, sys.argv[1:5])
    W, H = layer(d_out, d_in, "cpu")
    for iters in map(int, sys.argv[5].split(",")):
        t = time.perf_counter()
        r = quantize_additive(W, H, n_codebooks=m, bits=b, group_size=8, kmeans_iters=iters)
        print(f"{d_out}x{d_in} {m}x{b} kmeans iterations {iters}: {time.perf_counter() - t:.1f} s, "
              f"rounds {len(r.errors) - 2}, initial {r.errors[0]:.5f}, final {r.errors[-1]:.5f}", flush=True)


if __name__ == "__main__":
    main()
