"""Benchmark: the exact binary-code histogram fit (lowbit.cluster.fit_binary_code, GPTQT step two,
arXiv 2407.02891) against the unpruned enumeration it replaced, on the same problems.

Problems are k = 3 fits of 16-level histograms: ``--problems`` Gaussian-bump histograms (the
original timing case: Poisson counts, peak 40) and as many GPTQT-like ones (4-bit min-max levels of
rows of ``core.testing.heavy_tailed`` weights, 4096 per row, re-explore multipliers 1.0 and 1.2).
``old_fit`` below is the previous implementation (least squares on every cut, both code orders),
kept here only to measure against. The new fit is warmed up first (its cut tables are cached per
process, as in a model run). Reports seconds, speedup and the largest relative error difference.

    python benchmarks/binary_code_fit.py --device cpu --problems 64

Prints a table and writes JSON (default ``results/bench_binary_code_fit_<device>.json``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]

try:
    from lowbit.cluster.binary_code import _histogram_error, code_signs, fit_binary_code, spd_solve
    from lowbit.core.testing import heavy_tailed
    from lowbit.core.uniform import minmax_params
except ImportError:  # not installed: use the checkout (lowbit is a PEP 420 namespace package)
    sys.path[:0] = [str(ROOT / "packages" / f"lowbit-{area}" / "src") for area in ("core", "cluster")]
    from lowbit.cluster.binary_code import _histogram_error, code_signs, fit_binary_code, spd_solve
    from lowbit.core.testing import heavy_tailed
    from lowbit.core.uniform import minmax_params


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    p.add_argument("--problems", type=int, default=64, help="problems of each kind")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of the new fit (the median is kept)")
    p.add_argument("--skip-old", action="store_true", help="time the new fit only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None,
                   help="output path (default results/bench_binary_code_fit_<device>.json)")
    return p.parse_args(argv)


def old_fit(counts: torch.Tensor, k: int, chunk: int = 1 << 22) -> torch.Tensor:
    """The previous fit_binary_code (integer levels): ``(P,)`` errors of least squares on every cut
    (``C(m + 2^k - 1, 2^k - 1)``) for both code orders."""
    dev = counts.device
    P, m = counts.shape
    c = counts.to(torch.float64)
    L = torch.arange(m, dtype=torch.float64, device=dev)
    zero = torch.zeros(P, 1, dtype=torch.float64, device=dev)
    pc, ps = torch.cat([zero, c.cumsum(1)], 1), torch.cat([zero, (c * L).cumsum(1)], 1)
    total_sq = (c * L * L).sum(1)
    K = 1 << k
    inner = torch.tensor(list(itertools.combinations_with_replacement(range(m + 1), K - 1)),
                         dtype=torch.int64).reshape(-1, K - 1)
    n = inner.shape[0]
    cuts = torch.cat([torch.zeros(n, 1, dtype=torch.int64), inner, torch.full((n, 1), m, dtype=torch.int64)], 1).to(dev)
    signs = code_signs(k).to(dev)
    ridge = 1e-12 * (pc[:, -1] * (1 + L.abs().max() ** 2)).clamp_min(1e-300)
    eye = torch.eye(k + 1, dtype=torch.float64, device=dev)
    best_err = torch.full((P,), float("inf"), dtype=torch.float64, device=dev)
    best_theta = torch.zeros(P, k + 1, dtype=torch.float64, device=dev)
    orders = [list(range(K))] + ([[0, 1, 2, 4, 3, 5, 6, 7]] if k == 3 else [])
    for order in orders:
        V = torch.cat([torch.ones(K, 1, dtype=torch.float64, device=dev), signs[order]], 1)
        VV = V[:, :, None] * V[:, None, :]
        step = max(1, chunk // P)
        for s in range(0, cuts.shape[0], step):
            t = cuts[s: s + step]
            C = pc[:, t[:, 1:]] - pc[:, t[:, :-1]]
            S = ps[:, t[:, 1:]] - ps[:, t[:, :-1]]
            M = torch.einsum("pnj,jab->pnab", C, VV) + ridge[:, None, None, None] * eye
            rhs = torch.einsum("pnj,ja->pna", S, V)
            theta = spd_solve(M, rhs)
            err = total_sq[:, None] - 2 * (theta * rhs).sum(-1) + torch.einsum("pna,pnab,pnb->pn", theta, M, theta)
            err_min, idx = err.min(1)
            better = err_min < best_err
            best_err = torch.where(better, err_min, best_err)
            best_theta = torch.where(better[:, None], theta[torch.arange(P, device=dev), idx], best_theta)
    alphas = best_theta[:, 1:].abs().sort(dim=1, descending=True).values
    return _histogram_error(c, L, alphas, best_theta[:, 0])


def problems(n: int, seed: int) -> dict[str, torch.Tensor]:
    """``(n, 16)`` histograms of each kind (module docstring)."""
    g = torch.Generator().manual_seed(seed)
    bump = torch.exp(-((torch.arange(16.0) - 7.5) / 3) ** 2)
    gauss = torch.poisson(bump[None].repeat(n, 1) * 40, generator=g).double()
    W = heavy_tailed(((n + 1) // 2, 4096), seed).double()
    scale, zero = minmax_params(W, 4)
    hists = []
    for mult in (1.0, 1.2):
        lv = torch.clamp(torch.round(W / (scale[:, None] * mult)) + zero[:, None], 0, 15).long()
        hists.append(torch.zeros(W.shape[0], 16, dtype=torch.float64).scatter_add_(1, lv, torch.ones_like(lv).double()))
    return {"gaussian bump": gauss, "gptqt 4-bit heavy-tailed": torch.cat(hists)[:n]}


def _timed(fn: Any, device: torch.device) -> tuple[float, Any]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, out


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    fit_binary_code(torch.ones(2, 16, device=device), 3)  # warm-up: cut tables of 16 used levels
    rows: list[dict[str, Any]] = []
    for name, counts in problems(args.problems, args.seed).items():
        counts = counts.to(device)
        new_times, new = [], None
        for _ in range(max(1, args.repeats)):
            dt, new = _timed(lambda c=counts: fit_binary_code(c, 3), device)
            new_times.append(dt)
        assert new is not None
        used = (counts > 0).sum(1).double()
        row: dict[str, Any] = {"problems": name, "n": counts.shape[0], "used_levels_mean": float(used.mean()),
                               "new_s": statistics.median(new_times)}
        if not args.skip_old:
            old_s, old = _timed(lambda c=counts: old_fit(c, 3), device)
            rel = (new.error - old) / old.clamp_min(1e-12)
            row.update({"old_s": old_s, "speedup": old_s / row["new_s"], "max_rel_error_diff": float(rel.abs().max()),
                        "new_worse_count": int((rel > 1e-9).sum())})
        rows.append(row)
    return {
        "benchmark": "binary_code_fit", "k": 3, "levels": 16, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "repeats": args.repeats,
        "seed": args.seed, "results": rows,
    }


def format_table(report: dict[str, Any]) -> str:
    head = ["problems", "n", "used levels", "new s", "old s", "speedup", "max rel diff", "new worse"]
    lines = [head]
    for r in report["results"]:
        lines.append([r["problems"], str(r["n"]), f"{r['used_levels_mean']:.1f}", f"{r['new_s']:.3f}",
                      f"{r.get('old_s', float('nan')):.2f}", f"{r.get('speedup', float('nan')):.0f}x",
                      f"{r.get('max_rel_error_diff', float('nan')):.1e}", str(r.get("new_worse_count", "-"))])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    out = [" | ".join(c.rjust(wd) for c, wd in zip(row, widths, strict=True)) for row in lines]
    out.insert(1, "-+-".join("-" * wd for wd in widths))
    title = (f"fit_binary_code k=3 on 16 levels, {report['device_name']}, torch {report['torch']}, "
             f"{report['torch_threads']} threads")
    return "\n".join([title, *out])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = run(args)
    print(format_table(report))
    path = args.json or ROOT / "results" / f"bench_binary_code_fit_{torch.device(args.device).type}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
