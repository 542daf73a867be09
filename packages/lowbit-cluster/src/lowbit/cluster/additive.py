"""Additive multi-codebook quantization of one layer (AQLM, Egiazarian et al., arXiv 2401.06118).

Row r of ``W`` (d_out x d_in, y = x W^T) is cut into n = d_in / g groups of g consecutive inputs, and
group j is a sum of M codewords, one from each codebook ``C_m`` (K = 2^B vectors of length g), times a
per-row scale:

    W_hat[r, J] = s_r * sum_m C_m[b_{r,j,m}],      J = jg .. (j+1)g - 1.

The objective is the layer's output error ``E = tr((W - W_hat) H (W - W_hat)^T)`` with ``H`` the
Hessian of the layer inputs. Three steps, all on whatever device ``W`` lives:

1. **Residual k-means** (:func:`residual_kmeans_init`): scales ``s_r = rms(w_r)``; codebook m is
   vector k-means (:func:`~lowbit.cluster.kmeans_vec.kmeans_vectors`) of what codebooks 1..m-1 left of
   the scaled groups.
2. **Beam search over codes** (:func:`beam_search`), one group column j at a time, every row at once.
   With ``G = (W - W_hat) H`` kept current, changing group j of row r to ``v`` changes E by
   ``-2 (v - a)^T G_J + (v - a)^T H_JJ (v - a)`` (``a`` the current group), i.e. up to a constant
   ``f(v) = v^T H_JJ v - 2 v^T y`` with ``y = H_JJ a + G_J``. For ``v = s u``, ``u = sum_m c_m``, a
   beam of hypotheses replaces codebook m's code by each of its K codewords in turn (scores by one
   ``(rows, g) x (g, K)`` matmul) and keeps the best ``beam_size``; the current codes are always a
   candidate, so E never increases. Then ``G -= (v - a) H_J:``.
3. **Codebook and scale update** (:func:`update_codebooks`): Adam on ``C`` and on the scales (as
   multipliers of their initial values) minimising E / tr(W H W^T), betas (0, 0.95) as the paper.

:func:`quantize_additive` alternates 3 and 2 until a round improves E by less than ``tol``
(relative), and returns a ``"additive"`` :class:`~lowbit.core.formats.QuantizedWeight`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lowbit.core.formats import QuantizedWeight, additive_values

from .kmeans_vec import kmeans_vectors

log = logging.getLogger(__name__)


def check_additive_shape(shape: tuple[int, int], group_size: int, n_codebooks: int, bits: int) -> None:
    """``ValueError`` unless ``g`` divides d_in, ``M >= 1`` and ``1 <= B <= 16``."""
    if group_size < 1 or shape[1] % group_size:
        raise ValueError(f"group size {group_size} must divide the input dimension {shape[1]}")
    if n_codebooks < 1:
        raise ValueError(f"need at least one codebook, got {n_codebooks}")
    if not 1 <= bits <= 16:
        raise ValueError(f"codebook bits must be in 1..16, got {bits}")


def output_error(W: Tensor, W_hat: Tensor, H: Tensor) -> Tensor:
    """``tr((W - W_hat) H (W - W_hat)^T)`` (a 0-d tensor; differentiable)."""
    R = W - W_hat
    return ((R @ H) * R).sum()


def residual_kmeans_init(W: Tensor, n_codebooks: int, bits: int, group_size: int, *, iters: int = 25,
                         seed: int = 0, backend: str = "torch") -> tuple[Tensor, Tensor, Tensor]:
    """``(codes (d_out, n, M) int64, codebooks (M, 2^B, g), scales (d_out,))`` by residual k-means on
    the row-scaled groups ``W[r, J] / s_r``, ``s_r`` the root mean square of row r."""
    d_out, d_in = W.shape
    check_additive_shape((d_out, d_in), group_size, n_codebooks, bits)
    scales = W.pow(2).mean(1).sqrt().clamp_min(torch.finfo(W.dtype).tiny)
    resid = (W / scales[:, None]).reshape(-1, group_size)
    codes, books = [], []
    for m in range(n_codebooks):
        c, a = kmeans_vectors(resid, 1 << bits, iters=iters, seed=seed + m, backend=backend)
        resid = resid - c[a]
        codes.append(a)
        books.append(c)
    return torch.stack(codes, -1).reshape(d_out, d_in // group_size, n_codebooks), torch.stack(books), scales


def _group_search(y: Tensor, HJ: Tensor, codes: Tensor, codebooks: Tensor, s: Tensor, beam_size: int,
                  chunk_elements: int) -> Tensor:
    """New codes ``(rows, M)`` minimising ``f(s u) = s^2 u^T HJ u - 2 s u^T y`` by beam search.

    y: ``(rows, g)``; HJ: ``(g, g)``; codes: ``(rows, M)`` current; codebooks ``(M, K, g)``; s ``(rows,)``.
    """
    M, K, _ = codebooks.shape
    rows = y.shape[0]
    CH = codebooks @ HJ  # (M, K, g)
    q = (CH * codebooks).sum(-1)  # (M, K): c^T HJ c
    yC = torch.einsum("rg,mkg->mrk", y, codebooks)  # (M, rows, K): c^T y
    hyp = codes[:, None, :].clone()  # (rows, beam, M)
    U = codebooks[torch.arange(M, device=y.device)[None, None, :], hyp].sum(2)  # (rows, beam, g)
    s_ = s[:, None, None]
    for m in range(M):
        Um = U - codebooks[m][hyp[..., m]]  # (rows, beam, g): the sum without codebook m
        UmH = Um @ HJ
        base = s_[..., 0] ** 2 * (UmH * Um).sum(-1) - 2 * s_[..., 0] * (Um * y[:, None, :]).sum(-1)
        beam = hyp.shape[1]
        step = max(1, chunk_elements // (beam * K))
        new_hyp = torch.empty(rows, min(beam_size, beam * K), M, dtype=hyp.dtype, device=hyp.device)
        for r0 in range(0, rows, step):
            r = slice(r0, r0 + step)
            # f = base + s^2 (2 c^T HJ u_-m + c^T HJ c) - 2 s c^T y, for every hypothesis and codeword
            f = (base[r, :, None] + s_[r] ** 2 * (2 * UmH[r] @ codebooks[m].T + q[m])
                 - 2 * s_[r] * yC[m, r, None, :])
            best = f.reshape(f.shape[0], -1).topk(new_hyp.shape[1], dim=1, largest=False).indices
            src, cw = best // K, best % K
            nh = hyp[r].gather(1, src[..., None].expand(-1, -1, M)).clone()
            nh[..., m] = cw
            new_hyp[r] = nh
        hyp = new_hyp
        U = codebooks[torch.arange(M, device=y.device)[None, None, :], hyp].sum(2)
    return hyp[:, 0]  # topk is sorted: the best hypothesis first


@torch.no_grad()
def beam_search(W: Tensor, H: Tensor, codes: Tensor, codebooks: Tensor, scales: Tensor, *,
                beam_size: int = 1, chunk_elements: int = 1 << 25) -> Tensor:
    """Codes ``(d_out, n, M)`` no worse than ``codes`` for ``E`` (group columns visited in order)."""
    d_out, d_in = W.shape
    g = codebooks.shape[-1]
    codes = codes.clone()
    W_hat = additive_values(codes, codebooks, scales)
    G = (W - W_hat) @ H
    for j in range(d_in // g):
        J = slice(j * g, (j + 1) * g)
        HJ = H[J, J]
        a = W_hat[:, J]
        y = a @ HJ + G[:, J]
        new = _group_search(y, HJ, codes[:, j], codebooks, scales, beam_size, chunk_elements)
        v = scales[:, None] * codebooks[torch.arange(codebooks.shape[0], device=W.device)[None, :], new].sum(1)
        G.addmm_(v - a, H[J, :], alpha=-1)
        W_hat[:, J] = v
        codes[:, j] = new
    return codes


def update_codebooks(W: Tensor, H: Tensor, codes: Tensor, codebooks: Tensor, scales: Tensor, *,
                     steps: int = 100, lr: float = 1e-3, betas: tuple[float, float] = (0.0, 0.95)
                     ) -> tuple[Tensor, Tensor]:
    """``(codebooks, scales)`` after ``steps`` Adam steps on ``E / tr(W H W^T)`` with codes fixed.

    The scales are learned as multipliers ``u`` of the given ones (``s = s0 u``, u starts at 1), so that
    codebook entries and multipliers are both of order one for Adam's step size. The best iterate is
    returned (never worse than the input).
    """
    norm = output_error(W, torch.zeros_like(W), H).clamp_min(1e-30)
    C = codebooks.detach().clone().requires_grad_(True)
    u = torch.ones_like(scales).requires_grad_(True)
    opt = torch.optim.Adam([C, u], lr=lr, betas=betas)
    best = (float("inf"), codebooks, scales)
    for _ in range(steps + 1):
        loss = output_error(W, additive_values(codes, C, scales * u), H) / norm
        if loss.item() < best[0]:
            best = (loss.item(), C.detach().clone(), (scales * u).detach().clone())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return best[1], best[2]


@dataclass
class AdditiveResult:
    """``Q``: the dequantized weight; ``qweight``: the ``"additive"`` container; ``errors``: relative
    error ``E / tr(W H W^T)`` after the initialisation and after every round."""

    Q: Tensor
    qweight: QuantizedWeight
    errors: list[float] = field(default_factory=list)


def quantize_additive(W: Tensor, H: Tensor, *, n_codebooks: int = 2, bits: int = 8, group_size: int = 8,
                      beam_size: int = 1, kmeans_iters: int = 25, adam_steps: int = 100, lr: float = 1e-3,
                      max_rounds: int = 10, tol: float = 0.01, seed: int = 0,
                      backend: str = "torch") -> AdditiveResult:
    """AQLM for one layer: residual k-means, then rounds of codebook/scale updates and beam search
    until a round improves the error by less than ``tol`` (relative) or after ``max_rounds``.

    Args:
        W: ``(d_out, d_in)``; H: ``(d_in, d_in)`` Hessian of the inputs.
        n_codebooks, bits, group_size: M, B, g ("2x8 g8": M = 2, B = 8, g = 8).
    Codebooks and scales are rounded to fp16 (what is stored, and what the accounting counts) before
    the last beam search, so the codes are optimal for the stored values.
    """
    if not (torch.isfinite(W).all() and torch.isfinite(H).all()):
        raise ValueError("weight or Hessian holds non-finite values (NaN or infinity)")
    if H.shape != (W.shape[1], W.shape[1]):
        raise ValueError(f"Hessian shape {tuple(H.shape)} does not match weight input dim {W.shape[1]}")
    W, H = W.detach().float(), H.detach().float()
    norm = float(output_error(W, torch.zeros_like(W), H).clamp_min(1e-30))
    codes, C, s = residual_kmeans_init(W, n_codebooks, bits, group_size, iters=kmeans_iters, seed=seed,
                                       backend=backend)

    def rel_error() -> float:
        return float(output_error(W, additive_values(codes, C, s), H)) / norm

    errors = [rel_error()]
    for _ in range(max_rounds):
        C, s = update_codebooks(W, H, codes, C, s, steps=adam_steps, lr=lr)
        codes = beam_search(W, H, codes, C, s, beam_size=beam_size)
        errors.append(rel_error())
        if errors[-2] - errors[-1] < tol * errors[-2]:
            break
    C, s = C.half().float(), s.half().float()
    codes = beam_search(W, H, codes, C, s, beam_size=beam_size)
    qw = QuantizedWeight("additive", (W.shape[0], W.shape[1]), codes, bits, scales=s.half(), group_size=group_size,
                         codebooks=C.half(), meta={"n_codebooks": n_codebooks})
    Q = qw.dequantize()
    errors.append(float(output_error(W, Q, H)) / norm)
    log.debug("additive %dx%d g%d: relative error %s", n_codebooks, bits, group_size, errors)
    return AdditiveResult(Q, qw, errors)
