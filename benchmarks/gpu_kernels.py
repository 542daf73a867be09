"""GPU kernels against fp16 ``torch.matmul`` and the peer kernels, on one GPU in one run (issue 9).

    python benchmarks/gpu_kernels.py --json gpu_kernels.json      # on a GPU (about 5 minutes on an H100)
    python benchmarks/gpu_kernels.py --quick --json /tmp/q.json   # CPU, Triton interpreter, tiny shapes

Sections (each row printed as measured; the JSON is rewritten after every row, so a run cut short
keeps what it measured):

- ``copy``: device-to-device copy bandwidth of a 1 GiB buffer (read + write bytes / time): the
  bandwidth floor's denominator.
- ``layer``: per layer (d_out x d_in) and batch, each format's Triton kernel (random codes: the time
  does not depend on the values), fp16 ``torch.matmul(x, W.T)``, torch's int4 kernel
  (``aten._weight_int4pack_mm``, bf16 activations, 4-bit group 128) and the ``aqlm`` package's kernels
  when importable. Each timing rotates through enough distinct copies of the weight that together
  they exceed ``2 x L2`` (so the weights come from memory, as in decoding), all calls captured in one
  CUDA graph (no launch overhead) replayed ``--replays`` times; microseconds per call. ``floor_us``:
  (bytes of the prepared weight + x + y) / copy bandwidth; ``bw_fraction = floor_us / us``.
  ``rel_err``: max |y - x W_hat^T| / max |x W_hat^T| against the torch reference on the first copy.
- ``decode``: one Llama-7B-shaped decoder layer (hidden 4096, MLP 11008, 32 heads; random weights)
  for one token: RMSNorm, q/k/v/o, attention of the one query over a static 1024-token KV cache (the
  cache is not updated; k and v are still projected), SiLU MLP, residuals; every linear through the
  format's kernel; several layer copies in sequence (> 2 x L2), in one CUDA graph; layer-tokens/s =
  1 / time per layer.

``--baseline JSON`` (an earlier run's file, e.g. ``docs/results/kernels/gpu_kernels_h100_v1.json``) adds
that run's time of the same format, shape and batch to each row (``baseline_us``, ``vs_baseline``): the
earlier kernel versions compared without keeping their code.

The Triton kernels take their launch configuration from the per-GPU file or tune it on the first call
per shape (see ``lowbit.kernels.triton.common``): that happens in the warm-up before capture. The
JSON's ``configs`` holds every configuration the process knew (the per-GPU file's included); with
``--sweep`` each row also has its own ``config`` and every candidate's time (``sweep_us``; a candidate
that cannot be captured in a CUDA graph is timed eagerly, with a note on stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lowbit.kernels.triton.timing import graph_us, map_tensors, n_copies, state_bytes, time_configs

LAYER_SHAPES = [(4096, 4096), (4096, 11008), (11008, 4096)]  # (d_out, d_in); the targets first
QUICK_SHAPES = [(256, 256), (512, 256)]


class Timer:
    """Microseconds per call of a list of calls (one per weight copy), CUDA-graphed on a GPU
    (:func:`lowbit.kernels.triton.timing.graph_us`, as the kernels' tuner times them); on the CPU, or where
    the calls cannot be captured, launched eagerly (launch overhead included)."""

    def __init__(self, device: torch.device, replays: int) -> None:
        self.device, self.replays = device, replays

    def __call__(self, calls: list[Callable[[], object]]) -> tuple[float, bool]:
        for c in calls:  # warm-up: compilation and tuning happen here, outside the graph
            c()
        if self.device.type != "cuda":
            t = time.perf_counter()
            for c in calls:
                c()
            return 1e6 * (time.perf_counter() - t) / len(calls), False
        try:
            return graph_us(calls, self.replays), True
        except Exception as e:  # not capturable: time eager launches (includes launch overhead)
            print(f"  (no CUDA graph: {type(e).__name__}: {e})", file=sys.stderr)
        reps = max(1, 64 // len(calls))
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(self.replays * reps):
            for c in calls:
                c()
        torch.cuda.synchronize()
        return 1e6 * (time.perf_counter() - t) / (self.replays * reps * len(calls)), False


def copy_bandwidth(device: torch.device, quick: bool) -> float:
    """Bytes per second of a large device-to-device copy (read + write)."""
    n = (1 << 20) if quick else (1 << 30)
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    if device.type != "cuda":
        t = time.perf_counter()
        dst.copy_(src)
        return 2 * n / (time.perf_counter() - t)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize()
    return 2 * n * 20 / (1e-3 * start.elapsed_time(end))


def lowbit_formats() -> dict[str, tuple[str, Callable[[int, int, torch.device], Any]]]:
    """name -> (kernel kind, builder(d_out, d_in, device) -> QuantizedWeight)."""
    from lowbit.kernels.triton import random_weights as rw

    return {
        "uniform4 g128": ("uniform", lambda o, i, d: rw.random_uniform(o, i, 4, 128, 0, d)),
        "uniform3 g128": ("uniform", lambda o, i, d: rw.random_uniform(o, i, 3, 128, 0, d)),
        "uniform2 g128": ("uniform", lambda o, i, d: rw.random_uniform(o, i, 2, 128, 0, d)),
        "uniform4 g128 +0.5% outliers": ("uniform", lambda o, i, d: rw.random_uniform(o, i, 4, 128, 0, d,
                                                                                      outlier_frac=0.005)),
        "table4": ("table", lambda o, i, d: rw.random_table(o, i, 4, 0, d)),
        "table3": ("table", lambda o, i, d: rw.random_table(o, i, 3, 0, d)),
        "table2": ("table", lambda o, i, d: rw.random_table(o, i, 2, 0, d)),
        "mixed 2/3/4 tables": ("table", lambda o, i, d: rw.random_table(o, i, rw.random_widths(i, (2, 3, 4), 0, d),
                                                                        0, d)),
        "binary2 g128": ("binary", lambda o, i, d: rw.random_binary(o, i, 2, 128, 0, d)),
        "binary3 g128": ("binary", lambda o, i, d: rw.random_binary(o, i, 3, 128, 0, d)),
        "aqlm 2x8": ("additive", lambda o, i, d: rw.random_additive(o, i, 2, 8, 0, d)),
        "aqlm 1x16": ("additive", lambda o, i, d: rw.random_additive(o, i, 1, 16, 0, d)),
    }


def kernel_fns(kind: str) -> tuple[Callable[..., Any], Callable[..., Tensor], Callable[[Any, Tensor], tuple]]:
    """``(prepare, run, tuning)`` of a kernel kind (see ``lowbit.kernels.triton``)."""
    from lowbit.kernels.triton import additive, column_tables, uniform

    return {"uniform": (uniform.prepare, uniform.run, uniform.tuning),
            "table": (column_tables.prepare, column_tables.run, column_tables.tuning),
            "binary": (uniform.prepare_binary, uniform.run, uniform.tuning),
            "additive": (additive.prepare, additive.run, additive.tuning)}[kind]


def sweep_configs(states: list[Any], x: Tensor, run: Callable[..., Tensor], tuning: Callable[[Any, Tensor], tuple],
                  timer: Timer, device: torch.device) -> tuple[Any, dict[str, float]]:
    """Every candidate configuration timed as the layer rows are (rotated copies, one CUDA graph:
    :func:`lowbit.kernels.triton.timing.time_configs`, which the tuner uses too, with ``--replays``); the
    fastest becomes the configuration of this key in this process (and in ``--write-tuned``)."""
    from lowbit.kernels.triton import common

    key, configs = tuning(states[0], common.as_activations(x))
    if device.type == "cuda":
        us = time_configs(configs, lambda s, c: run(s, x, c), states, timer.replays)
    else:
        us = [timer([lambda s=s, c=c: run(s, x, c) for s in states])[0] for c in configs]
    times = {str(dataclasses.astuple(c)): t for c, t in zip(configs, us, strict=True)}
    best = min(configs, key=lambda c: times[str(dataclasses.astuple(c))])
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    common._BEST[common.key_text((*key, gpu))] = best
    SWEPT[common.key_text((*key, gpu))] = best
    return best, times


SWEPT: dict[str, Any] = {}  # key text -> configuration chosen by --sweep in this run


def torch_int4(d_out: int, d_in: int, gs: int, device: torch.device) -> tuple[Callable[[Tensor], Tensor], int]:
    """torch's int4 kernel: ``_convert_weight_to_int4pack`` (uint8 (N, K/2) since torch 2.5, int32 (N, K)
    before) and ``_weight_int4pack_mm(x bf16, w, group_size, scales_and_zeros (K/g, N, 2) bf16)``."""
    q = torch.randint(0, 16, (d_out, d_in), dtype=torch.int32, device=device)
    try:
        w = torch.ops.aten._convert_weight_to_int4pack((q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8), 8)
    except Exception:
        w = torch.ops.aten._convert_weight_to_int4pack(q, 8)
    sz = (0.01 * torch.randn(d_in // gs, d_out, 2, device=device)).to(torch.bfloat16)
    return (lambda x: torch.ops.aten._weight_int4pack_mm(x, w, gs, sz)), w.numel() * w.element_size() + sz.numel() * 2


def aqlm_layer(d_out: int, d_in: int, m: int, b: int, device: torch.device) -> tuple[Callable[[Tensor], Tensor], int]:
    """The ``aqlm`` package's QuantizedLinear with random codes (its own CUDA/Triton kernels)."""
    import aqlm  # noqa: F401  (on the GPU machine, from carried wheels: scripts/device_aqlm_peer.sh)

    layer = aqlm.QuantizedLinear(d_in, d_out, in_group_size=8, out_group_size=1, num_codebooks=m,
                                 nbits_per_codebook=b, bias=False).to(device=device, dtype=torch.float16)
    with torch.no_grad():
        layer.codes.copy_(torch.randint(-(1 << (b - 1)), 1 << (b - 1), layer.codes.shape, device=device))
    nbytes = sum(t.numel() * t.element_size() for t in layer.state_dict().values())
    return (lambda x: layer(x[None])[0]), nbytes


def load_baseline(path: str | None) -> dict[tuple[str, int, int, int], float]:
    """``(format, d_out, d_in, batch) -> us`` of an earlier run's JSON (empty without one)."""
    if not path:
        return {}
    with open(path) as f:
        rows = json.load(f)["layer"]
    return {(r["format"], *r["shape"], r["batch"]): r["us"] for r in rows if "us" in r}


class Report:
    def __init__(self, path: str | None, meta: dict[str, Any], baseline: dict | None = None) -> None:
        self.path, self.out = path, {"meta": meta, "layer": [], "decode": [], "peers": [], "configs": {}}
        self.baseline = baseline or {}

    def add(self, section: str, row: dict[str, Any]) -> None:
        old = self.baseline.get((row.get("format"), *row.get("shape", ()), row.get("batch")))
        if section == "layer" and old is not None and "us" in row:
            row.update(baseline_us=old, vs_baseline=old / row["us"])
        self.out[section].append(row)
        print(" | ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        self.save()

    def save(self) -> None:
        from lowbit.kernels.triton import common

        self.out["configs"] = {k: dataclasses.asdict(v) for k, v in common._BEST.items()}
        if self.path:
            with open(self.path, "w") as f:
                json.dump(self.out, f, indent=2, default=str)


def over(rep: Report, deadline: float, what: str) -> bool:
    """Past the time budget: note what was skipped."""
    if time.monotonic() < deadline:
        return False
    rep.out.setdefault("skipped", []).append(what)
    print(f"time budget spent: skipped {what}", flush=True)
    return True


def layer_section(rep: Report, shapes: list[tuple[int, int]], batches: list[int], device: torch.device,
                  timer: Timer, bw: float, l2: int, only: list[str] | None, deadline: float, sweep: bool) -> None:
    formats = lowbit_formats()
    for m in batches:
        for d_out, d_in in shapes:
            x = torch.randn(m, d_in, device=device).half()
            io_bytes = (m * d_in + m * d_out) * 2
            base = dict(shape=[d_out, d_in], batch=m)
            W = torch.randn(d_out, d_in, device=device).half()
            ws = [W.clone() for _ in range(n_copies(W.numel() * 2, l2))]
            fp16_us, graphed = timer([lambda w=w: torch.matmul(x, w.T) for w in ws])
            floor = 1e6 * (W.numel() * 2 + io_bytes) / bw
            rep.add("layer", {"format": "fp16 matmul", **base, "us": fp16_us, "speedup": 1.0,
                              "weight_bytes": W.numel() * 2, "floor_us": floor, "bw_fraction": floor / fp16_us,
                              "copies": len(ws), "graphed": graphed})
            del ws, W
            peers_section(rep, d_out, d_in, m, device, timer, bw, l2, fp16_us, io_bytes)
            times: dict[str, float] = {}
            for name, (kind, build) in formats.items():
                if (only and not any(o in name for o in only)) or over(rep, deadline, f"{name} {d_out}x{d_in} b{m}"):
                    continue
                prepare, run, tuning = kernel_fns(kind)
                qw = build(d_out, d_in, device)
                state = prepare(qw, device)
                nb = state_bytes(state)
                states = [state] + [map_tensors(state, torch.clone) for _ in range(n_copies(nb, l2) - 1)]
                extra: dict[str, Any] = {}
                if sweep:
                    best, swept = sweep_configs(states, x, run, tuning, timer, device)
                    extra = {"config": dataclasses.asdict(best), "sweep_us": swept}
                y = run(state, x)
                ref = x.float() @ qw.dequantize().T
                err = float((y.float() - ref).abs().max() / ref.abs().max())
                us, graphed = timer([lambda s=s: run(s, x) for s in states])  # the chosen one, timed anew
                times[name] = us
                floor = 1e6 * (nb + io_bytes) / bw
                row = {"format": name, **base, "us": us, "speedup": fp16_us / us, "weight_bytes": nb,
                       "floor_us": floor, "bw_fraction": floor / us, "copies": len(states), "graphed": graphed,
                       "rel_err": err, **extra}
                if name.startswith("mixed") and isinstance(qw.bits, Tensor):
                    frac = {b: float((qw.bits == b).float().mean()) for b in (2, 3, 4)}
                    if all(f"table{b}" in times for b in frac):
                        row["byte_weighted_single_us"] = sum(f * times[f"table{b}"] for b, f in frac.items())
                        row["ratio_to_single"] = us / row["byte_weighted_single_us"]
                if "outliers" in name and "uniform4 g128" in times:
                    row["ratio_to_no_outliers"] = us / times["uniform4 g128"]
                rep.add("layer", row)
                del states, state, qw, ref
            if device.type == "cuda":
                torch.cuda.empty_cache()


def peers_section(rep: Report, d_out: int, d_in: int, m: int, device: torch.device, timer: Timer, bw: float,
                  l2: int, fp16_us: float, io_bytes: int) -> None:
    base = dict(shape=[d_out, d_in], batch=m)
    peers: list[tuple[str, Callable[[], tuple[Callable[[Tensor], Tensor], int]], torch.dtype]] = [
        ("torch int4 g128 (_weight_int4pack_mm)", lambda: torch_int4(d_out, d_in, 128, device), torch.bfloat16),
        ("aqlm package 2x8", lambda: aqlm_layer(d_out, d_in, 2, 8, device), torch.float16),
        ("aqlm package 1x16", lambda: aqlm_layer(d_out, d_in, 1, 16, device), torch.float16),
    ]
    for name, make, dtype in peers:
        try:
            first = make()
            fns = [first[0]] + [make()[0] for _ in range(n_copies(first[1], l2) - 1)]
            x = torch.randn(m, d_in, device=device).to(dtype)
            us, graphed = timer([lambda f=f: f(x) for f in fns])
            floor = 1e6 * (first[1] + io_bytes) / bw
            rep.add("layer", {"format": name, **base, "us": us, "speedup": fp16_us / us, "weight_bytes": first[1],
                              "floor_us": floor, "bw_fraction": floor / us, "copies": len(fns), "graphed": graphed})
        except Exception as e:  # unavailable here (op missing, signature changed, package not installed)
            rep.add("layer", {"format": name, **base, "unavailable": f"{type(e).__name__}: {str(e)[:300]}"})


def decode_section(rep: Report, device: torch.device, timer: Timer, l2: int, quick: bool,
                   only: list[str] | None, deadline: float) -> None:
    hidden, inter, heads, ctx = (256, 512, 4, 64) if quick else (4096, 11008, 32, 1024)
    hd = hidden // heads
    shapes = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "o": (hidden, hidden),
              "gate": (inter, hidden), "up": (inter, hidden), "down": (hidden, inter)}
    kcache = torch.randn(1, heads, ctx, hd, device=device).half()
    vcache = torch.randn(1, heads, ctx, hd, device=device).half()
    n1 = torch.ones(hidden, device=device).half()
    n2 = torch.ones(hidden, device=device).half()
    x = torch.randn(1, hidden, device=device).half()

    def rms(h: Tensor, w: Tensor) -> Tensor:
        hf = h.float()
        return (hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + 1e-6)).half() * w

    def layer(lin: Callable[[str, Tensor], Tensor]) -> Tensor:
        h = rms(x, n1)
        q, _, _ = lin("q", h), lin("k", h), lin("v", h)
        a = torch.nn.functional.scaled_dot_product_attention(q.view(1, heads, 1, hd), kcache, vcache)
        h2 = x + lin("o", a.reshape(1, hidden))
        g = rms(h2, n2)
        return h2 + lin("down", torch.nn.functional.silu(lin("gate", g)) * lin("up", g))

    dense = {k: (0.02 * torch.randn(*s, device=device)).half() for k, s in shapes.items()}
    nb = sum(w.numel() * 2 for w in dense.values())
    copies = [dense] + [{k: w.clone() for k, w in dense.items()} for _ in range(n_copies(nb, l2, 8) - 1)]
    us, graphed = timer([lambda c=c: layer(lambda n, h: torch.matmul(h, c[n].T)) for c in copies])
    rep.add("decode", {"format": "fp16", "us_per_layer": us, "layer_tokens_per_s": 1e6 / us,
                       "weight_bytes": nb, "copies": len(copies), "graphed": graphed})
    fp16_us = us
    del copies, dense
    for name, (kind, build) in lowbit_formats().items():
        if name in ("table3", "table2") or (only and not any(o in name for o in only)) \
                or over(rep, deadline, f"decode {name}"):
            continue
        prepare, run, _ = kernel_fns(kind)
        states = {k: prepare(build(*s, device), device) for k, s in shapes.items()}
        nb = sum(state_bytes(s) for s in states.values())
        copies = [states] + [{k: map_tensors(s, torch.clone) for k, s in states.items()}
                             for _ in range(n_copies(nb, l2, 8) - 1)]
        us, graphed = timer([lambda c=c: layer(lambda n, h: run(c[n], h)) for c in copies])
        rep.add("decode", {"format": name, "us_per_layer": us, "layer_tokens_per_s": 1e6 / us,
                           "speedup": fp16_us / us, "weight_bytes": nb, "copies": len(copies), "graphed": graphed})
        del copies, states
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default="gpu_kernels.json")
    p.add_argument("--quick", action="store_true", help="CPU, Triton interpreter, tiny shapes (checks the script)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--replays", type=int, default=20, help="CUDA graph replays per timing")
    p.add_argument("--only", nargs="*", help="formats whose name contains one of these")
    p.add_argument("--skip-decode", action="store_true")
    p.add_argument("--budget-s", type=float, help="start nothing new after this many seconds (rows so far kept)")
    p.add_argument("--baseline", help="an earlier run's JSON: its times beside each row")
    p.add_argument("--sweep", action="store_true",
                   help="time every candidate configuration of each lowbit row (rotated, graphed) and use the fastest")
    p.add_argument("--write-tuned", metavar="JSON", help="merge the configurations chosen by --sweep into this "
                   "per-GPU file (lowbit/kernels/triton/tuned/<gpu>.json, read by the kernels' tuner)")
    a = p.parse_args()
    if a.quick:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            raise SystemExit("needs a CUDA GPU (or --quick)")
        device = torch.device("cuda")
    import triton

    torch.manual_seed(0)
    l2 = torch.cuda.get_device_properties(device).L2_cache_size if device.type == "cuda" else 1 << 16
    meta = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (interpreter)",
            "torch": torch.__version__, "triton": triton.__version__, "l2_bytes": l2,
            "command": " ".join(sys.argv)}
    rep = Report(a.json, meta, load_baseline(a.baseline))
    bw = copy_bandwidth(device, a.quick)
    rep.out["meta"]["copy_bandwidth_GBps"] = bw / 1e9
    print(f"device {meta['device']}, torch {meta['torch']}, triton {meta['triton']}, L2 {l2 / 2**20:.0f} MiB, "
          f"copy bandwidth {bw / 1e9:.0f} GB/s", flush=True)
    timer = Timer(device, a.replays)
    shapes = QUICK_SHAPES if a.quick else LAYER_SHAPES
    deadline = time.monotonic() + (a.budget_s or math.inf)
    with torch.no_grad():  # batch 1 first, then decoding (tuned by then), then larger batches
        layer_section(rep, shapes, a.batches[:1], device, timer, bw, l2, a.only, deadline, a.sweep)
        if not a.skip_decode:
            decode_section(rep, device, timer, l2, a.quick, a.only, deadline)
        layer_section(rep, shapes, a.batches[1:], device, timer, bw, l2, a.only, deadline, a.sweep)
    rep.save()
    if a.write_tuned and SWEPT:
        write_tuned(a.write_tuned)
    print_table(rep.out)


def write_tuned(path: str) -> None:
    """Merge this run's swept configurations into the per-GPU file at ``path``."""
    old: dict[str, Any] = {}
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
    old.update({k: dataclasses.asdict(v) for k, v in SWEPT.items()})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(dict(sorted(old.items())), f, indent=1)
    print(f"wrote {len(SWEPT)} configurations into {path} ({len(old)} in all)", flush=True)


def print_table(out: dict[str, Any]) -> None:
    print("\n| format | shape | batch | us | speedup vs fp16 | bandwidth fraction | baseline us | vs baseline |"
          "\n|---|---|---|---|---|---|---|---|")
    for r in out["layer"]:
        if "unavailable" in r:
            print(f"| {r['format']} | {r['shape'][0]}x{r['shape'][1]} | {r['batch']} | unavailable | | | | |")
        else:
            old = f"{r['baseline_us']:.2f} | {r['vs_baseline']:.2f}x" if "baseline_us" in r else " | "
            print(f"| {r['format']} | {r['shape'][0]}x{r['shape'][1]} | {r['batch']} | {r['us']:.2f} | "
                  f"{r['speedup']:.2f} | {r['bw_fraction']:.2f} | {old} |")
    print("\n| decode layer | us/layer | layer tokens/s |\n|---|---|---|")
    for r in out["decode"]:
        print(f"| {r['format']} | {r['us_per_layer']:.1f} | {r['layer_tokens_per_s']:.0f} |")


if __name__ == "__main__":
    main()
