"""Time AQLM's layer quantizer (``lowbit.cluster.quantize_additive``) on large layers, old against new
in one run, and project the time for all linear layers of a 7B Llama (32 blocks of 4 x 4096x4096,
2 x 11008x4096 (gate, up) and 1 x 4096x11008 (down)).

    python benchmarks/aqlm_layer.py --device cuda --json out.json          # H100: 4096 and 11008
    python benchmarks/aqlm_layer.py --quick --json out.json                # CPU: 512 and 1376, minutes
    python benchmarks/aqlm_layer.py --settings 2x8 --runs old,new,reference_like

The Hessian is synthetic with a power-law spectrum (eigenvalues ``i^-alpha``, random eigenvectors),
like the fast-decaying spectra of real layer inputs; the weight is heavy-tailed (Student t, df 4).
Runs (each reports seconds, relative error ``tr(dW H dW^T) / tr(W H W^T)``, rounds, and ``ops``: the
aten operations dispatched (views excluded), about the kernel launches on a GPU, where the search is
launch-bound):

- ``new``: the library's defaults.
- ``new_beam8``: the library at the reference's search settings (beam 8, tolerance 0.001, 20 rounds).
- ``old``: the implementation before the rewrite (commit af8bdb3: Adam codebook updates, one
  (rows, g) x (g, K) matmul per hypothesis chunk, G updated in full after each group), frozen below as
  the baseline, at its defaults (beam 1, 100 Adam steps a round, tolerance 0.01). It shares the
  library's residual k-means, work budget included (1x16: 8 Lloyd iterations on 4096^2, not 25).
- ``reference_like``: the old implementation at the reference's settings (beam 8, 200 Adam steps a
  round, tolerance 0.001, 20 rounds): the error to match, and the time to beat.

The 7B projection uses the measured square and wide layers of a run (``proj_7b_hours``); for runs
timed only on the square layer it scales that time by the ratio of weights (``*_est``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from lowbit.cluster import quantize_additive, residual_kmeans_init
from lowbit.cluster.additive import output_error
from lowbit.core.formats import additive_values
from lowbit.core.testing import heavy_tailed


def powerlaw_hessian(d: int, alpha: float, seed: int, device: str) -> Tensor:
    """``Q diag(i^-alpha) Q^T`` with a random orthogonal ``Q``, scaled to mean diagonal 1 (the Gaussian
    matrix is drawn on the CPU, its QR factorisation runs on ``device``: 4096^2 took 5.6 s on a 2-core
    CPU, and 11008^2 costs about 20 times that)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g).to(device))
    ev = torch.arange(1, d + 1, dtype=torch.float32, device=device) ** -alpha
    H = (q * ev) @ q.T
    return (H / H.diagonal().mean()).to(device)


# ---- the baseline: the implementation before the rewrite (af8bdb3), frozen for comparison ----

def _old_group_search(y: Tensor, HJ: Tensor, codes: Tensor, codebooks: Tensor, s: Tensor, beam_size: int,
                      chunk_elements: int) -> Tensor:
    M, K, _ = codebooks.shape
    rows = y.shape[0]
    CH = codebooks @ HJ
    q = (CH * codebooks).sum(-1)
    yC = torch.einsum("rg,mkg->mrk", y, codebooks)
    hyp = codes[:, None, :].clone()
    U = codebooks[torch.arange(M, device=y.device)[None, None, :], hyp].sum(2)
    s_ = s[:, None, None]
    for m in range(M):
        Um = U - codebooks[m][hyp[..., m]]
        UmH = Um @ HJ
        base = s_[..., 0] ** 2 * (UmH * Um).sum(-1) - 2 * s_[..., 0] * (Um * y[:, None, :]).sum(-1)
        beam = hyp.shape[1]
        step = max(1, chunk_elements // (beam * K))
        new_hyp = torch.empty(rows, min(beam_size, beam * K), M, dtype=hyp.dtype, device=hyp.device)
        for r0 in range(0, rows, step):
            r = slice(r0, r0 + step)
            f = (base[r, :, None] + s_[r] ** 2 * (2 * UmH[r] @ codebooks[m].T + q[m])
                 - 2 * s_[r] * yC[m, r, None, :])
            best = f.reshape(f.shape[0], -1).topk(new_hyp.shape[1], dim=1, largest=False).indices
            src, cw = best // K, best % K
            nh = hyp[r].gather(1, src[..., None].expand(-1, -1, M)).clone()
            nh[..., m] = cw
            new_hyp[r] = nh
        hyp = new_hyp
        U = codebooks[torch.arange(M, device=y.device)[None, None, :], hyp].sum(2)
    return hyp[:, 0]


@torch.no_grad()
def old_beam_search(W: Tensor, H: Tensor, codes: Tensor, codebooks: Tensor, scales: Tensor, *,
                    beam_size: int = 1, chunk_elements: int = 1 << 25) -> Tensor:
    d_in, g = W.shape[1], codebooks.shape[-1]
    codes = codes.clone()
    W_hat = additive_values(codes, codebooks, scales)
    G = (W - W_hat) @ H
    for j in range(d_in // g):
        J = slice(j * g, (j + 1) * g)
        HJ = H[J, J]
        a = W_hat[:, J]
        y = a @ HJ + G[:, J]
        new = _old_group_search(y, HJ, codes[:, j], codebooks, scales, beam_size, chunk_elements)
        v = scales[:, None] * codebooks[torch.arange(codebooks.shape[0], device=W.device)[None, :], new].sum(1)
        G.addmm_(v - a, H[J, :], alpha=-1)
        W_hat[:, J] = v
        codes[:, j] = new
    return codes


def old_update_codebooks(W: Tensor, H: Tensor, codes: Tensor, codebooks: Tensor, scales: Tensor, *,
                         steps: int = 100, lr: float = 1e-3) -> tuple[Tensor, Tensor]:
    norm = output_error(W, torch.zeros_like(W), H).clamp_min(1e-30)
    C = codebooks.detach().clone().requires_grad_(True)
    u = torch.ones_like(scales).requires_grad_(True)
    opt = torch.optim.Adam([C, u], lr=lr, betas=(0.0, 0.95))
    best = (float("inf"), codebooks, scales)
    for _ in range(steps + 1):
        loss = output_error(W, additive_values(codes, C, scales * u), H) / norm
        if loss.item() < best[0]:
            best = (loss.item(), C.detach().clone(), (scales * u).detach().clone())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return best[1], best[2]


def old_quantize_additive(W: Tensor, H: Tensor, *, n_codebooks: int, bits: int, group_size: int,
                          beam_size: int = 1, adam_steps: int = 100, max_rounds: int = 10,
                          tol: float = 0.01) -> list[float]:
    """The old loop; returns the relative errors (init, every round, after fp16 rounding)."""
    norm = float(output_error(W, torch.zeros_like(W), H))
    codes, C, s = residual_kmeans_init(W, n_codebooks, bits, group_size, iters=25)
    err = lambda: float(output_error(W, additive_values(codes, C, s), H)) / norm  # noqa: E731
    errors = [err()]
    for _ in range(max_rounds):
        C, s = old_update_codebooks(W, H, codes, C, s, steps=adam_steps)
        codes = old_beam_search(W, H, codes, C, s, beam_size=beam_size)
        errors.append(err())
        if errors[-2] - errors[-1] < tol * errors[-2]:
            break
    C, s = C.half().float(), s.half().float()
    codes = old_beam_search(W, H, codes, C, s, beam_size=beam_size)
    errors.append(err())
    return errors


# ---- measurement ----

class OpCounter(TorchDispatchMode):
    """Counts the aten operations dispatched inside it (views excluded): about the kernel launches."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if not getattr(func, "is_view", False):
            self.ops += 1
        return func(*args, **(kwargs or {}))


RUNS: dict[str, Callable[..., list[float]]] = {
    "new": lambda W, H, M, B: quantize_additive(W, H, n_codebooks=M, bits=B, group_size=8).errors,
    "new_beam8": lambda W, H, M, B: quantize_additive(W, H, n_codebooks=M, bits=B, group_size=8, beam_size=8,
                                                      tol=0.001, max_rounds=20).errors,
    "old": lambda W, H, M, B: old_quantize_additive(W, H, n_codebooks=M, bits=B, group_size=8),
    "reference_like": lambda W, H, M, B: old_quantize_additive(W, H, n_codebooks=M, bits=B, group_size=8,
                                                               beam_size=8, adam_steps=200, tol=0.001,
                                                               max_rounds=20),
}


def layer(d_out: int, d_in: int, device: str) -> tuple[Tensor, Tensor]:
    return (heavy_tailed((d_out, d_in), 0) * 0.02).to(device), powerlaw_hessian(d_in, 1.0, 1, device)


def timed(run: str, W: Tensor, H: Tensor, setting: tuple[int, int], count_ops: bool) -> dict[str, Any]:
    """Seconds, relative error and rounds of one run; with ``count_ops`` a second, counted run."""
    sync = torch.cuda.synchronize if W.is_cuda else (lambda: None)
    sync()
    t = time.perf_counter()
    errors = RUNS[run](W, H, *setting)
    sync()
    out: dict[str, Any] = {"seconds": round(time.perf_counter() - t, 3), "rel_error": errors[-1],
                           "rounds": len(errors) - 2}
    if count_ops:
        with OpCounter() as c:
            RUNS[run](W, H, *setting)
        out["ops"] = c.ops
    return out


def project(square: float, up: float, down: float) -> float:
    """Hours for 32 blocks of 4 square (q, k, v, o), 2 up-shaped (gate, up) and 1 down-shaped layers."""
    return 32 * (4 * square + 2 * up + down) / 3600


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="CPU-sized layers (512 and 1376) in a few minutes")
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--wide", type=int, default=11008)
    p.add_argument("--settings", help="comma list of MxB (default 2x8,1x16; with --quick 2x8,1x12: at CPU sizes "
                   "a 65,536-entry codebook holds every group, zero error)")
    p.add_argument("--runs", default="new,new_beam8,old,reference_like", help=f"comma list of {list(RUNS)}")
    p.add_argument("--wide-runs", default="new,new_beam8", help="runs also timed on the wide layers ('none')")
    p.add_argument("--count-ops", action="store_true", help="also count the ops of each square-layer run "
                   "(a second run each; default with --quick)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (off: fp32 as the reference)")
    p.add_argument("--json")
    a = p.parse_args()
    size, wide = (512, 1376) if a.quick else (a.size, a.wide)
    count_ops = a.count_ops or a.quick
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    out: dict[str, Any] = {"device": a.device, "size": size, "wide": wide, "tf32": a.tf32,
                           "gpu": torch.cuda.get_device_name() if a.device == "cuda" else None,
                           "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": []}

    def save() -> None:  # after every layer, so a run cut off by a time limit keeps the others
        if a.json:
            with open(a.json, "w") as f:
                json.dump(out, f, indent=1)

    for name in (a.settings or ("2x8,1x12" if a.quick else "2x8,1x16")).split(","):
        setting = tuple(int(x) for x in name.split("x"))
        row: dict[str, Any] = {"setting": name}
        out["rows"].append(row)
        sq = layer(size, size, a.device)
        for run in a.runs.split(","):
            r = row[run] = timed(run, *sq, setting, count_ops)  # type: ignore[arg-type]
            save()
            if run in a.wide_runs.split(","):
                print(json.dumps({"setting": name, "run": run, **r}), flush=True)  # the square layer first
                r["up_seconds"] = timed(run, *layer(wide, size, a.device), setting, False)["seconds"]  # type: ignore[arg-type]
                r["down_seconds"] = timed(run, *layer(size, wide, a.device), setting, False)["seconds"]  # type: ignore[arg-type]
                r["proj_7b_hours"] = project(r["seconds"], r["up_seconds"], r["down_seconds"])
            else:
                ratio = wide / size
                r["proj_7b_hours_est"] = project(r["seconds"], ratio * r["seconds"], ratio * r["seconds"])
            print(json.dumps({"setting": name, "run": run, **r}), flush=True)
            save()
    print(f"\n{'setting':8} {'run':15} {'s/layer':>9} {'rel err':>9} {'rounds':>6} {'ops':>9} {'7B (h)':>8}")
    for row in out["rows"]:
        for run, r in row.items():
            if run == "setting":
                continue
            proj = r.get("proj_7b_hours", r.get("proj_7b_hours_est"))
            print(f"{row['setting']:8} {run:15} {r['seconds']:9.2f} {r['rel_error']:9.4f} {r['rounds']:6d} "
                  f"{r.get('ops', 0):9d} {proj:7.2f}{'' if 'proj_7b_hours' in r else '*'}")
    print("* estimated from the square layer by the ratio of weights")


if __name__ == "__main__":
    main()
