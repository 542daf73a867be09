"""Time CLAQ's k-means column quantizer inside GPTQ on one synthetic layer, against uniform GPTQ.

    python benchmarks/claq_layer.py --device cuda --rows 576 --cols 576 --bits 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from lowbit.cluster import KMeansColumnQuantizer
from lowbit.core.testing import heavy_tailed, random_hessian
from lowbit.recon import UniformColumnQuantizer, quantize_weight


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--rows", type=int, default=576)
    p.add_argument("--cols", type=int, default=576)
    p.add_argument("--bits", type=int, default=3)
    p.add_argument("--json")
    a = p.parse_args()
    W = heavy_tailed((a.rows, a.cols), 0).to(a.device)
    H = random_hessian(a.cols, 1).to(a.device)
    out = {"device": a.device, "rows": a.rows, "cols": a.cols, "bits": a.bits}
    for name, make in (("gptq_uniform_g64", lambda: UniformColumnQuantizer(a.bits, 64, True)),
                       ("claq_kmeans", lambda: KMeansColumnQuantizer(a.bits))):
        quantize_weight(W[:, :64], H[:64, :64], make())  # warm-up
        if a.device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        r = quantize_weight(W, H, make(), act_order=True)
        if a.device == "cuda":
            torch.cuda.synchronize()
        s = time.perf_counter() - t
        out[name] = {"seconds": s, "ms_per_column": 1e3 * s / a.cols, "error": r.error}
    print(json.dumps(out, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
