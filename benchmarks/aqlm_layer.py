"""Time AQLM's layer quantizer (``lowbit.cluster.quantize_additive``) on one large layer and project the
time for all linear layers of a 7B Llama (32 blocks of 4 x 4096x4096 + 3 x 4096x11008).

    python benchmarks/aqlm_layer.py --device cuda --json out.json

The Hessian is synthetic with a power-law spectrum (eigenvalues ``i^-alpha``, random eigenvectors),
like the fast-decaying spectra of real layer inputs; the weight is heavy-tailed (Student t, df 4).
For each setting the fast default (beam 1, 100 Adam steps a round) is compared with a slower,
reference-like search (beam 8, 200 Adam steps a round, tolerance 0.001): time and relative error
``tr(dW H dW^T) / tr(W H W^T)``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from lowbit.cluster import quantize_additive
from lowbit.core.testing import heavy_tailed


def powerlaw_hessian(d: int, alpha: float, seed: int, device: str) -> torch.Tensor:
    """``Q diag(i^-alpha) Q^T`` with a random orthogonal ``Q``, scaled to mean diagonal 1."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    ev = torch.arange(1, d + 1, dtype=torch.float32) ** -alpha
    H = (q * ev) @ q.T
    return (H / H.diagonal().mean()).to(device)


def run(d_out: int, d_in: int, setting: tuple[int, int], device: str, **kw: object) -> dict[str, float]:
    W = (heavy_tailed((d_out, d_in), 0) * 0.02).to(device)
    H = powerlaw_hessian(d_in, 1.0, 1, device)
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    r = quantize_additive(W, H, n_codebooks=setting[0], bits=setting[1], group_size=8, **kw)  # type: ignore[arg-type]
    if device == "cuda":
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - t, "rel_error": r.errors[-1], "rounds": len(r.errors) - 2}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--wide", type=int, default=11008)
    p.add_argument("--no-reference", action="store_true", help="skip the slow reference-like search")
    p.add_argument("--json")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    out: dict[str, object] = {"device": a.device, "gpu": torch.cuda.get_device_name() if a.device == "cuda" else None}
    rows = []
    for setting in ((2, 8), (1, 16)):
        name = f"{setting[0]}x{setting[1]}"
        fast = run(a.size, a.size, setting, a.device)
        wide = run(a.wide, a.size, setting, a.device)  # up/gate shape; down (4096 x 11008) counted the same
        proj = 32 * (4 * fast["seconds"] + 3 * wide["seconds"]) / 3600
        row = {"setting": name, "fast": fast, "wide_11008x4096": wide, "projected_7b_hours": proj}
        if not a.no_reference:
            row["reference_like"] = run(a.size, a.size, setting, a.device, beam_size=8, adam_steps=200, tol=0.001,
                                        max_rounds=20)
        rows.append(row)
        print(json.dumps(row), flush=True)
    out["rows"] = rows
    print(f"{'setting':8} {'s/layer 4096^2':>15} {'rel err':>9} {'s 11008x4096':>13} {'7B (h)':>7} "
          f"{'ref s':>8} {'ref err':>9}")
    for r in rows:
        ref = r.get("reference_like", {})
        print(f"{r['setting']:8} {r['fast']['seconds']:15.1f} {r['fast']['rel_error']:9.4f} "
              f"{r['wide_11008x4096']['seconds']:13.1f} {r['projected_7b_hours']:7.2f} "
              f"{ref.get('seconds', float('nan')):8.1f} {ref.get('rel_error', float('nan')):9.4f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
