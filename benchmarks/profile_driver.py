"""Where the sequential driver spends its time: capture, statistics, the layer quantizer, replay.

    python benchmarks/profile_driver.py --nsamples 128 --seqlen 2048 --method gptq --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import torch

from lowbit.core import hf
from lowbit.core.data import calibration_windows, load_text, tokenize
from lowbit.core.recipe import quantize_linears, resolve_device
from lowbit.recon import UniformColumnQuantizer, quantize_weight, round_to_nearest


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--nsamples", type=int, default=128)
    p.add_argument("--seqlen", type=int, default=2048)
    p.add_argument("--method", default="gptq", choices=["gptq", "rtn", "none"])
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--json")
    a = p.parse_args()
    device = resolve_device(a.device)
    model, tok = hf.load_model(None)
    ids = calibration_windows(tokenize(tok, load_text("ptb")), a.nsamples, a.seqlen, 0)
    t: dict[str, float] = defaultdict(float)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(name, fn):
        def wrapper(*args, **kw):
            sync()
            t0 = time.perf_counter()
            out = fn(*args, **kw)
            sync()
            t[name] += time.perf_counter() - t0
            return out
        return wrapper

    hf.capture_block_inputs = timed("capture", hf.capture_block_inputs)
    hf.collect_stats = timed("collect_stats", hf.collect_stats)
    hf.forward_block = timed("forward_block", hf.forward_block)

    def layer(W, H):
        if a.method == "gptq":
            r = quantize_weight(W, H, UniformColumnQuantizer(3, 64, True), act_order=True)
            return r.Q, r.qweight
        return round_to_nearest(W, UniformColumnQuantizer(3, 64))

    layer_t = timed("layer_quantizer", layer)
    block = (lambda ctx: {}) if a.method == "none" else (lambda ctx: quantize_linears(ctx, layer_t))
    sync()
    t0 = time.perf_counter()
    hf.run_sequential(model, ids, block, device=device, batch_size=a.batch_size)
    sync()
    t["total"] = time.perf_counter() - t0
    res = {"device": str(device), "method": a.method, "nsamples": a.nsamples, "seqlen": a.seqlen,
           "seconds": dict(t)}
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
