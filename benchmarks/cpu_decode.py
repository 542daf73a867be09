"""CPU batch-1 decoding: per-layer GEMV time of each packed CPU path against dense fp32 (same run, same
``x``), and tokens/s on SmolLM2-135M for fp32 and each format (in memory, QuantLinear over packed storage).

    python benchmarks/cpu_decode.py --json cpu_decode.json [--threads 1]

Prints a table and writes JSON. Layers: random codes and value sets of each format (the time does not
depend on the values; :mod:`lowbit.kernels.triton.random_weights`, plain torch), ``x`` of one row, the
median (and min) of ``--repeats`` calls each. Model: uniform formats are RTN-quantized from the real
weights; table / binary / additive use random weights of the format and the layer's shape (speed only:
their text is meaningless). The machine may be shared: formats are interleaved round by round and the
median kept.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch

from lowbit.core.formats import QuantizedWeight
from lowbit.core.hf import block_linears, decoder_blocks, load_model
from lowbit.core.storage import encode, nbytes
from lowbit.kernels import QuantLinear, quantize_model_layers, select
from lowbit.kernels.triton.random_weights import random_additive, random_binary, random_table, random_widths
from lowbit.recon import UniformColumnQuantizer, round_to_nearest

# (name, random QuantizedWeight of shape (d_out, d_in)) for the layer and model rows
FORMATS: list[tuple[str, Callable[[int, int], QuantizedWeight]]] = [
    ("table 4-bit", lambda o, i: random_table(o, i, 4)),
    ("table mixed 2/3/4", lambda o, i: random_table(o, i, random_widths(i, (2, 3, 4)))),
    ("binary 2-bit g64", lambda o, i: random_binary(o, i, 2, 64)),
    ("binary 3-bit g64", lambda o, i: random_binary(o, i, 3, 64)),
    ("additive 2x8 g8", lambda o, i: random_additive(o, i, 2, 8)),
    ("additive 1x8 g8", lambda o, i: random_additive(o, i, 1, 8)),
]


def times_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, min) milliseconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times), 1e3 * min(times)


def uniform4(d_out: int, d_in: int) -> QuantizedWeight:
    """Uniform 4-bit codes, group 64, random codes and scales."""
    g = torch.Generator().manual_seed(0)
    G = d_in // 64
    return QuantizedWeight("uniform", (d_out, d_in), torch.randint(0, 16, (d_out, d_in), generator=g).to(torch.uint8),
                           4, scales=torch.rand(d_out, G, generator=g).half().float(),
                           zeros=torch.randint(0, 16, (d_out, G), generator=g).float(), group_size=64)


def layer_times(shapes: list[tuple[int, int]], repeats: int) -> list[dict[str, object]]:
    """One row per (shape, format): the selected kernel's time and dense fp32 ``x @ W.T`` timed alongside."""
    rows = []
    for d_out, d_in in shapes:
        x = torch.randn(1, d_in, generator=torch.Generator().manual_seed(1))
        for name, make in [("uniform 4-bit g64", uniform4), *FORMATS]:
            qw = make(d_out, d_in)
            ql = QuantLinear.from_qweight(qw)
            W = qw.dequantize()
            kernel = select(ql.meta, "cpu", 1).name
            with torch.no_grad():
                dense, dense_min = times_ms(lambda: x @ W.T, repeats)  # noqa: B023
                packed, packed_min = times_ms(lambda: ql(x), repeats)  # noqa: B023
                err = float((ql(x) - x @ W.T).abs().max())
            rows.append({"shape": [d_out, d_in], "format": name, "kernel": kernel, "dense_fp32_ms": dense,
                         "packed_ms": packed, "dense_fp32_min_ms": dense_min, "packed_min_ms": packed_min,
                         "speedup": dense / packed, "dense_bytes": W.numel() * 4,
                         "packed_bytes": nbytes(encode(qw)[1]), "max_abs_err": err,
                         "max_abs_ref": float((x @ W.T).abs().max())})
    return rows


def tokens_per_second(model: torch.nn.Module, ids: torch.Tensor, new: int) -> float:
    with torch.no_grad():
        t = time.perf_counter()
        model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False)
        return new / (time.perf_counter() - t)


def model_rows(formats: list[tuple[int, int]], new: int, rounds: int) -> list[dict[str, object]]:
    """Tokens/s of every model, the median of ``rounds`` interleaved runs (the machine is shared):
    fp32, uniform RTN at each (bits, group), and each of :data:`FORMATS` with random weights."""
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
    for name, make in FORMATS:
        m, _ = load_model(None)
        qws = {}
        for i, b in enumerate(decoder_blocks(m)):
            for n, lin in block_linears(b).items():
                qws[f"model.layers.{i}.{n}"] = make(*lin.weight.shape)
        quantize_model_layers(m, qws)
        models.append((f"{name} (random)", m, sum(nbytes(encode(q)[1]) for q in qws.values())))
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
    p.add_argument("--threads", type=int, default=None, help="torch and kernel threads (default: torch's)")
    p.add_argument("--json", default="cpu_decode.json")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    out: dict[str, object] = {"threads": torch.get_num_threads(), "torch": torch.__version__,
                              "loadavg_start": os.getloadavg()}
    layers = layer_times([(4096, 4096), (11008, 4096), (4096, 11008)], a.repeats)
    out["layers"] = layers
    print(f"{'layer (out x in)':<18}{'format':<20}{'kernel':<18}{'dense fp32 ms':>14}{'packed ms':>11}"
          f"{'speedup':>9}{'MB dense/packed':>18}")
    for r in layers:
        s = r["shape"]
        print(f"{s[0]} x {s[1]:<10}{r['format']:<20}{r['kernel']:<18}{r['dense_fp32_ms']:>14.2f}"
              f"{r['packed_ms']:>11.2f}{r['speedup']:>9.2f}{r['dense_bytes'] / 1e6:>10.1f} / "
              f"{r['packed_bytes'] / 1e6:.1f}")
    if not a.skip_model:
        rows = model_rows([(4, 64), (3, 64), (2, 64)], a.new_tokens, a.rounds)
        out["model"] = rows
        print(f"\nSmolLM2-135M, batch 1, {a.new_tokens} greedy tokens")
        print(f"{'format':<32}{'tokens/s':>10}{'linear MB':>11}{'vs fp16':>9}")
        for r in rows:
            print(f"{r['format']:<32}{r['tokens_per_s']:>10.1f}{r['linear_bytes'] / 1e6:>11.1f}"
                  f"{r['linear_bytes'] / r['fp16_bytes']:>9.3f}")
    out["loadavg_end"] = os.getloadavg()
    with open(a.json, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
