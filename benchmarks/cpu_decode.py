"""CPU batch-1 decoding: per-layer GEMV time of the packed 4-bit path against dense fp32, and tokens/s
on SmolLM2-135M for fp32 and RTN-quantized formats (in memory, QuantLinear over packed storage).

    python benchmarks/cpu_decode.py --json cpu_decode.json

Prints a table and writes JSON. Layers: uniform 4-bit codes, group 64 (random codes and scales; the
time does not depend on the values), ``x`` of one row, median of ``--repeats`` calls each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from lowbit.core.formats import QuantizedWeight
from lowbit.core.hf import block_linears, decoder_blocks, load_model
from lowbit.core.storage import encode, nbytes
from lowbit.kernels import QuantLinear, quantize_model_layers, select
from lowbit.recon import UniformColumnQuantizer, round_to_nearest


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def layer_times(shapes: list[tuple[int, int]], repeats: int) -> list[dict[str, object]]:
    rows = []
    for d_out, d_in in shapes:
        g = torch.Generator().manual_seed(0)
        G = d_in // 64
        qw = QuantizedWeight("uniform", (d_out, d_in), torch.randint(0, 16, (d_out, d_in), generator=g).to(torch.uint8),
                             4, scales=torch.rand(d_out, G, generator=g).half().float(),
                             zeros=torch.randint(0, 16, (d_out, G), generator=g).float(), group_size=64)
        ql = QuantLinear.from_qweight(qw)
        W = qw.dequantize()
        x = torch.randn(1, d_in, generator=g)
        kernel = select(ql.meta, "cpu", 1).name
        with torch.no_grad():
            dense = median_ms(lambda: x @ W.T, repeats)
            packed = median_ms(lambda: ql(x), repeats)
            err = float((ql(x) - x @ W.T).abs().max())
        rows.append({"shape": [d_out, d_in], "kernel": kernel, "dense_fp32_ms": dense, "packed_ms": packed,
                     "speedup": dense / packed, "dense_bytes": W.numel() * 4, "packed_bytes": nbytes(encode(qw)[1]),
                     "max_abs_err": err})
    return rows


def tokens_per_second(model: torch.nn.Module, ids: torch.Tensor, new: int) -> float:
    with torch.no_grad():
        t = time.perf_counter()
        model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False)
        return new / (time.perf_counter() - t)


def model_rows(formats: list[tuple[int, int]], new: int, rounds: int) -> list[dict[str, object]]:
    """Tokens/s of every model, the median of ``rounds`` interleaved runs (the machine is shared)."""
    model, tok = load_model(None)
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    n_lin = sum(m.weight.numel() for b in decoder_blocks(model) for m in block_linears(b).values())
    models: list[tuple[str, torch.nn.Module, int]] = [("fp32 dense", model, n_lin * 4)]
    for bits, gs in formats:
        m, _ = load_model(None)
        qws = {}
        for i, b in enumerate(decoder_blocks(m)):
            for n, lin in block_linears(b).items():
                qws[f"model.layers.{i}.{n}"] = round_to_nearest(lin.weight.data, UniformColumnQuantizer(bits, gs))[1]
        quantize_model_layers(m, qws)
        models.append((f"uniform {bits}-bit g{gs} (RTN)", m, sum(nbytes(encode(q)[1]) for q in qws.values())))
    for _, m, _ in models:
        m.config.use_cache = True  # type: ignore[union-attr]
        tokens_per_second(m, ids, 4)  # warm up: kernel layouts, the C build
    runs: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for i, (_, m, _) in enumerate(models):
            runs[i].append(tokens_per_second(m, ids, new))
    return [{"format": name, "tokens_per_s": statistics.median(r), "runs": r, "linear_bytes": nb,
             "fp16_bytes": n_lin * 2} for (name, _, nb), r in zip(models, runs, strict=True)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--skip-model", action="store_true")
    p.add_argument("--json", default="cpu_decode.json")
    a = p.parse_args()
    out: dict[str, object] = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    layers = layer_times([(4096, 4096), (11008, 4096), (4096, 11008)], a.repeats)
    out["layers"] = layers
    print(f"{'layer (out x in)':<18}{'kernel':<14}{'dense fp32 ms':>14}{'packed ms':>11}{'speedup':>9}"
          f"{'MB dense/packed':>18}")
    for r in layers:
        s = r["shape"]
        print(f"{s[0]} x {s[1]:<10}{r['kernel']:<14}{r['dense_fp32_ms']:>14.2f}{r['packed_ms']:>11.2f}"
              f"{r['speedup']:>9.2f}{r['dense_bytes'] / 1e6:>10.1f} / {r['packed_bytes'] / 1e6:.1f}")
    if not a.skip_model:
        rows = model_rows([(4, 64), (3, 64), (2, 64)], a.new_tokens, a.rounds)
        out["model"] = rows
        print(f"\nSmolLM2-135M, batch 1, {a.new_tokens} greedy tokens")
        print(f"{'format':<26}{'tokens/s':>10}{'linear MB':>11}{'vs fp16':>9}")
        for r in rows:
            print(f"{r['format']:<26}{r['tokens_per_s']:>10.1f}{r['linear_bytes'] / 1e6:>11.1f}"
                  f"{r['linear_bytes'] / r['fp16_bytes']:>9.3f}")
    with open(a.json, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
