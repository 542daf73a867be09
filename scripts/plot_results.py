"""Perplexity against total bits per weight for every recipe result under docs/results/.

    python scripts/plot_results.py                         # -> docs/results/ppl_vs_bits.png
    python scripts/plot_results.py --all-protocols --out /tmp/all.png

Reads every ``*.json`` under ``docs/results/`` (recursively) that a recipe wrote (it has ``method``,
``ppl`` and ``bits_per_weight``; benchmark files are skipped), keeps those evaluated by the reference
protocol (WikiText-2, 147 windows of 2048 tokens; ``--all-protocols`` keeps every protocol, each
labelled), and draws perplexity (log scale) against the total bits per weight of
``lowbit.core.bits.bit_report``, one series per method variant (group size for the uniform grids,
switched-off outlier sets for CMPQ), with the full-precision perplexity as a horizontal line.
Needs matplotlib (a script dependency, not a package one).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = {"text": "wikitext2", "seqlen": 2048, "windows": 147}


def load_results(root: Path) -> list[dict[str, Any]]:
    """Every recipe result (a JSON object with ``method``, ``ppl``, ``bits_per_weight``) under ``root``."""
    out = []
    for path in sorted(root.rglob("*.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(r, dict) and {"method", "ppl", "bits_per_weight"} <= r.keys():
            r["_path"] = str(path.relative_to(root))
            out.append(r)
    return out


def series_label(r: dict[str, Any]) -> str:
    """Method plus what distinguishes its variants: the group size of uniform grids, switched-off
    outlier extractions (CMPQ), reservation (CLAQ)."""
    cfg = r.get("config", {})
    label = str(r["method"]).upper()
    if r["method"] in ("gptq", "rtn"):
        label += f" g{cfg['group_size']}" if cfg.get("group_size") else " per-channel"
    if r["method"] == "cmpq":
        off = [name for name, flag in (("act.", "act_outliers"), ("quant.", "quant_outliers"))
               if cfg.get(flag) is False]
        if off:
            label += " without " + " and ".join(off) + " outliers"
    if r["method"].startswith("aqlm_"):  # aqlm_{M}x{B}_g{g}[_ft]
        label = "AQLM " + " ".join(r["method"].split("_")[1:3]) + (" fine-tuned" if cfg.get("finetune") else "")
    if cfg.get("reserve"):
        label += " + reservation"
    return label


def protocol(r: dict[str, Any]) -> str:
    e = r.get("eval", {})
    return f"{e.get('text')} {e.get('windows')}x{e.get('seqlen')}"


def is_reference(r: dict[str, Any]) -> bool:
    e = r.get("eval", {})
    return all(e.get(k) == v for k, v in REFERENCE.items())


def plot(results: list[dict[str, Any]], out: Path, all_protocols: bool) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[float, float]] = defaultdict(dict)
    fp: dict[str, float] = {}
    for r in results:
        if not all_protocols and not is_reference(r):
            continue
        label = series_label(r) + (f" [{protocol(r)}]" if all_protocols else "")
        series[label].setdefault(round(float(r["bits_per_weight"]), 6), float(r["ppl"]))  # duplicates: first
        if r.get("ppl_fp"):
            fp.setdefault(protocol(r), float(r["ppl_fp"]))
    if not series:
        print("no recipe results to plot", file=sys.stderr)
        return 1
    fig, ax = plt.subplots(figsize=(9, 6))
    colors = plt.get_cmap("tab10").colors
    styles, markers = ("-", "--", ":"), ("o", "s", "^")
    for i, label in enumerate(sorted(series)):  # ten colours, then a new line style and marker
        pts = sorted(series[label].items())
        ax.plot([b for b, _ in pts], [p for _, p in pts], color=colors[i % 10], linestyle=styles[i // 10 % 3],
                marker=markers[i // 10 % 3], label=label)
    for name, ppl in fp.items():
        ax.axhline(ppl, color="grey", linestyle="--", linewidth=1)
        ax.annotate(f"full precision {ppl:.2f}" + (f" [{name}]" if all_protocols else ""), (0.01, ppl),
                    xycoords=("axes fraction", "data"), textcoords="offset points", xytext=(0, 3),
                    fontsize=8, color="grey")
    ax.set_yscale("log")
    ax.set_xlabel("total bits per weight (codes + scales/zeros + tables + outliers, bit_report)")
    ax.set_ylabel("WikiText-2 perplexity (log scale)")
    title = "SmolLM2-135M, reference protocol (WikiText-2 147 x 2048)" if not all_protocols else "SmolLM2-135M"
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, handlelength=4, ncol=2)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    print(f"wrote {out} ({sum(len(s) for s in series.values())} points, {len(series)} series)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=ROOT / "docs" / "results", help="folder of result JSON")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "ppl_vs_bits.png")
    p.add_argument("--all-protocols", action="store_true", help="also plot results of other eval protocols")
    a = p.parse_args(argv)
    return plot(load_results(a.results), a.out, a.all_protocols)


if __name__ == "__main__":
    sys.exit(main())
