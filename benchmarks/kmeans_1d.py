"""Benchmark: batched weighted 1-D k-means (lowbit.cluster.kmeans_1d) against a scikit-learn loop.

CLAQ (arXiv 2405.17233) fits one 1-D k-means per weight column; its reference runs scikit-learn's
``KMeans`` once per column. This script clusters every column of a synthetic heavy-tailed
``rows x cols`` layer (``cols`` problems of ``rows`` points) at each ``k`` with ``kmeans_1d`` (torch
backend, on ``--device``) and with a per-column scikit-learn loop on CPU. Running scikit-learn over
all columns takes too long, so it runs on ``--sklearn-columns`` evenly spaced columns and its time
is extrapolated to all columns (the table says so). Objectives are compared on those columns as the
median of ``kmeans_1d objective / sklearn inertia`` (below 1: lowbit is better).

    python benchmarks/kmeans_1d.py --device cuda
    python benchmarks/kmeans_1d.py --device cpu --k 4 8 16 --sklearn-columns 64

Without scikit-learn installed the sklearn columns are skipped with a note. Prints a table and
writes JSON (default ``results/bench_kmeans_1d_<device>.json``).
"""

from __future__ import annotations

import argparse
import contextlib
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
    from lowbit.cluster import kmeans_1d
    from lowbit.core.testing import heavy_tailed
except ImportError:  # not installed: use the checkout (lowbit is a PEP 420 namespace package)
    sys.path[:0] = [str(ROOT / "packages" / f"lowbit-{area}" / "src") for area in ("core", "cluster")]
    from lowbit.cluster import kmeans_1d
    from lowbit.core.testing import heavy_tailed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    p.add_argument("--k", type=int, nargs="+", default=[4, 8, 16], help="numbers of centroids")
    p.add_argument("--rows", type=int, default=4096, help="points per problem (the layer's rows)")
    p.add_argument("--cols", type=int, default=4096, help="problems (the layer's columns)")
    p.add_argument("--sklearn-columns", type=int, default=64,
                   help="columns timed with scikit-learn, then extrapolated (0: none)")
    p.add_argument("--repeats", type=int, default=3, help="timed kmeans_1d runs per k (the median is kept)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic layer and of k-means++")
    p.add_argument("--json", type=Path, default=None,
                   help="output path (default results/bench_kmeans_1d_<device>.json)")
    return p.parse_args(argv)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_lowbit(x: torch.Tensor, k: int, seed: int, repeats: int) -> tuple[float, Any]:
    """Median wall time (s) of ``kmeans_1d(x, k)`` over ``repeats`` runs, and the last result."""
    kmeans_1d(x[: min(64, x.shape[0])], k, seed=seed)  # warm-up (CUDA context, kernels, allocator)
    times, result = [], None
    for _ in range(max(1, repeats)):
        _sync(x.device)
        t0 = time.perf_counter()
        result = kmeans_1d(x, k, seed=seed)
        _sync(x.device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def sklearn_available() -> str | None:
    """scikit-learn's version, or None when it is not installed."""
    try:
        import sklearn
    except ImportError:
        return None
    return str(sklearn.__version__)


def time_sklearn(x: torch.Tensor, k: int, seed: int) -> tuple[float, list[float]]:
    """Wall time (s) of a per-problem ``sklearn.cluster.KMeans`` loop over the rows of ``x`` (CPU),
    and the inertias. sklearn's OpenMP pool is limited to one thread when threadpoolctl is there:
    for 1-D problems of a few thousand points it is faster than the default."""
    from sklearn.cluster import KMeans

    try:
        from threadpoolctl import threadpool_limits

        limit: Any = threadpool_limits(1)
    except ImportError:
        limit = contextlib.nullcontext()
    data = x.detach().to("cpu", torch.float64).numpy()
    inertias = []
    with limit:
        t0 = time.perf_counter()
        for row in data:
            inertias.append(float(KMeans(n_clusters=k, random_state=seed).fit(row[:, None]).inertia_))
        elapsed = time.perf_counter() - t0
    return elapsed, inertias


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    w = heavy_tailed((args.rows, args.cols), seed=args.seed)
    x = w.T.contiguous().to(device)  # one problem per column
    sk_version = sklearn_available()
    n_sk = min(args.sklearn_columns, args.cols) if sk_version else 0
    cols = torch.linspace(0, args.cols - 1, max(n_sk, 1)).round().long().unique()[:n_sk]
    rows: list[dict[str, Any]] = []
    for k in args.k:
        seconds, res = time_lowbit(x, k, args.seed, args.repeats)
        row: dict[str, Any] = {
            "k": k, "lowbit_s": seconds, "lowbit_ms_per_column": 1e3 * seconds / args.cols,
            "lowbit_objective_mean": float(res.objective.mean()),
            "lowbit_iters_mean": float(res.n_iter.float().mean()), "lowbit_iters_max": int(res.n_iter.max()),
        }
        if len(cols):
            sk_s, inertia = time_sklearn(w.T[cols], k, args.seed)
            ratio = res.objective.cpu()[cols] / torch.tensor(inertia, dtype=torch.float64)
            row.update({
                "sklearn_columns": len(cols), "sklearn_s_sampled": sk_s,
                "sklearn_ms_per_column": 1e3 * sk_s / len(cols),
                "sklearn_s_extrapolated": sk_s / len(cols) * args.cols,
                "speedup": sk_s / len(cols) * args.cols / seconds,
                "objective_ratio_median": float(ratio.median()),
                "objective_ratio_p10": float(ratio.quantile(0.1)),
                "objective_ratio_p90": float(ratio.quantile(0.9)),
                "columns_not_worse": float((ratio <= 1 + 1e-6).double().mean()),
            })
        rows.append(row)
    return {
        "benchmark": "kmeans_1d",
        "layer": {"rows": args.rows, "cols": args.cols,
                  "distribution": "core.testing.heavy_tailed: 0.02 * Student-t(4), 0.5% of entries x10"},
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "torch": torch.__version__, "sklearn": sk_version, "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats, "seed": args.seed,
        "note": (f"sklearn timed on {len(cols)} evenly spaced columns (CPU, one KMeans per column, n_init "
                 f"default, 1 OpenMP thread) and extrapolated to all {args.cols} columns") if len(cols) else
                "scikit-learn not installed (or --sklearn-columns 0): sklearn columns skipped",
        "results": rows,
    }


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of ``report["results"]``."""
    dev = report["device"]
    head = ["k", f"lowbit {dev} s", "ms/col", "iters mean/max"]
    with_sk = any("sklearn_s_extrapolated" in r for r in report["results"])
    if with_sk:
        head += ["sklearn s (extrap.)", "sklearn ms/col", "speedup", "obj ratio median [p10, p90]",
                 "cols <= sk"]
    lines = [head]
    for r in report["results"]:
        line = [str(r["k"]), f"{r['lowbit_s']:.3f}", f"{r['lowbit_ms_per_column']:.4f}",
                f"{r['lowbit_iters_mean']:.1f}/{r['lowbit_iters_max']}"]
        if with_sk:
            line += [f"{r['sklearn_s_extrapolated']:.1f}", f"{r['sklearn_ms_per_column']:.2f}",
                     f"{r['speedup']:.0f}x",
                     f"{r['objective_ratio_median']:.4f} [{r['objective_ratio_p10']:.3f}, "
                     f"{r['objective_ratio_p90']:.3f}]", f"{100 * r['columns_not_worse']:.0f}%"]
        lines.append(line)
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    out = [" | ".join(c.rjust(wd) for c, wd in zip(row, widths, strict=True)) for row in lines]
    out.insert(1, "-+-".join("-" * wd for wd in widths))
    layer = report["layer"]
    title = (f"kmeans_1d: {layer['cols']} problems (columns) x {layer['rows']} points, "
             f"{report['device_name']}, torch {report['torch']}, {report['torch_threads']} threads")
    return "\n".join([title, *out, f"note: {report['note']}"])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = run(args)
    print(format_table(report))
    path = args.json or ROOT / "results" / f"bench_kmeans_1d_{torch.device(args.device).type}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
