"""Additive multi-codebook quantization of one layer (AQLM, Egiazarian et al., arXiv 2401.06118).

Row r of ``W`` (d_out x d_in, y = x W^T) is cut into n = d_in / g groups of g consecutive inputs, and
group j is a sum of M codewords, one from each codebook ``C_m`` (K = 2^B vectors of length g), times a
per-row scale:

    W_hat[r, J] = s_r * sum_m C_m[b_{r,j,m}],      J = jg .. (j+1)g - 1.

The objective is the layer's output error ``E = tr((W - W_hat) H (W - W_hat)^T)`` with ``H`` the
Hessian of the layer inputs. Three steps, all on whatever device ``W`` lives:

1. **Residual k-means** (:func:`residual_kmeans_init`): scales ``s_r = rms(w_r)``; codebook m is
   vector k-means (:func:`~lowbit.cluster.kmeans_vec.kmeans_vectors`) of what codebooks 1..m-1 left of
   the scaled groups. Each Lloyd iteration writes and reads all ``N K`` distances (N = d_out n
   groups), as does each search pass below: with K = 65,536 these passes are the whole cost (a
   4096 x 4096 layer: 1.4 x 10^11 scores, about 0.4 s a pass on an H100 by bandwidth), so the
   iterations have a work budget (8 iterations on that layer instead of 25).
2. **Beam search over codes** (:func:`beam_search`), one group position j at a time, every row at
   once, on the row-scaled target ``X = W / s`` (``E = sum_r s_r^2 (x_r - u_r)^T H (x_r - u_r)``,
   ``u_r`` the unscaled sum of codewords). With ``G = (X - U) H`` kept current, changing group j of
   a row from ``a`` to ``u`` changes its term by ``s^2 f(u) + const``, ``f(u) = u^T H_JJ u - 2 u^T y``,
   ``y = H_JJ a + G_J``. A beam of hypotheses replaces codebook m's code by each of its K codewords
   in turn, all scored by one ``(rows * beam, g) x (g, K)`` matmul against the precomputed
   ``c^T H_JJ c`` (:func:`_codeword_quadratics`, one matmul per block of positions), and keeps the
   best ``beam_size``; the current codes are always a candidate, so E never increases. G is updated
   lazily, GPTQ-style: inside a block of positions only the block's columns, then the rest by one
   matmul. With beam 1 about 20 operations a position for 2 codebooks (the implementation before
   this one: about 90; the GPU search is bound by their launches).
3. **Codebook and scale update** (:func:`update_codebooks`): with the codes fixed the approximation is
   linear in the scales and in the codebooks, so both are least squares under the H-norm: scales in
   closed form, codebooks by a few conjugate-gradient iterations preconditioned by the codewords'
   diagonal blocks, one ``(d_out, d_in) x (d_in, d_in)`` matmul each (the paper, section 3.2, takes
   Adam steps, lr 1e-4, betas (0, 0.95); reaching the optimum takes about 5 matmuls instead of 100s).

:func:`quantize_additive` alternates 3 and 2 until a round improves E by less than ``tol``
(relative), and returns a ``"additive"`` :class:`~lowbit.core.formats.QuantizedWeight`. The rounds
end in local optima that depend on the initialisation (25 Lloyd iterations gave a lower final error
than 5 or 10, and than k-means under H's diagonal blocks, in our measurements); a beam of 8 with
``tol=0.001`` and 20 rounds reaches the reference's error (``benchmarks/aqlm_layer.py``).
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
                         seed: int = 0, backend: str = "torch",
                         max_evaluations: int = 1 << 40) -> tuple[Tensor, Tensor, Tensor]:
    """``(codes (d_out, n, M) int64, codebooks (M, 2^B, g), scales (d_out,))`` by residual k-means on
    the row-scaled groups ``W[r, J] / s_r``, ``s_r`` the root mean square of row r (``iters`` and
    ``max_evaluations``: :func:`~lowbit.cluster.kmeans_vec.kmeans_vectors`'s Lloyd iterations and
    their work budget, per codebook)."""
    d_out, d_in = W.shape
    check_additive_shape((d_out, d_in), group_size, n_codebooks, bits)
    scales = W.pow(2).mean(1).sqrt().clamp_min(torch.finfo(W.dtype).tiny)
    resid = (W / scales[:, None]).reshape(-1, group_size)
    codes, books = [], []
    for m in range(n_codebooks):
        c, a = kmeans_vectors(resid, 1 << bits, iters=iters, seed=seed + m, backend=backend,
                              max_evaluations=max_evaluations)
        resid = resid - c[a]
        codes.append(a)
        books.append(c)
    return torch.stack(codes, -1).reshape(d_out, d_in // group_size, n_codebooks), torch.stack(books), scales


def _group_blocks(H: Tensor, g: int, j0: int, j1: int) -> Tensor:
    """``(j1 - j0, g, g)``: the diagonal blocks ``H_JJ`` of group positions ``j0 .. j1 - 1``."""
    idx = torch.arange(j0 * g, j1 * g, device=H.device).reshape(-1, g)
    return H[idx[:, :, None], idx[:, None, :]]


def _codeword_quadratics(codebooks: Tensor, HJJ: Tensor) -> Tensor:
    """``q (P, M, K)`` with ``q[p, m, k] = c_mk^T HJJ[p] c_mk``: one ``(M K, g^2) x (g^2, P)`` matmul.

    codebooks: ``(M, K, g)``; HJJ: ``(P, g, g)``.
    """
    M, K, g = codebooks.shape
    outer = (codebooks[..., :, None] * codebooks[..., None, :]).reshape(M * K, g * g)
    return (outer @ HJJ.reshape(-1, g * g).T).T.reshape(-1, M, K)


def _search_group(ys: Tensor, HJ: Tensor, q: Tensor, codes: Tensor, u: Tensor, codebooks: Tensor,
                  beam_size: int, chunk_elements: int) -> tuple[Tensor, Tensor]:
    """``(codes (rows, M), u (rows, g))`` minimising ``f(u) = u^T HJ u - 2 u^T ys`` over sums of
    codewords ``u = sum_m C_m[b_m]`` by beam search, one codebook at a time.

    ys: ``(rows, g)``; HJ: ``(g, g)``; q: ``(M, K)``, ``q[m, k] = c_mk^T HJ c_mk``; codes: ``(rows, M)``
    current, ``u`` their sum (always a candidate, so ``f`` never increases); codebooks: ``(M, K, g)``.

    For a hypothesis (a tuple of codes) and codebook m, with ``u_-m`` the sum of its other codewords
    and ``z = HJ u_-m - ys``: ``f(u_-m + c) = u_-m . (z - ys) + c^T HJ c + 2 c . z``, so every
    (hypothesis, codeword) pair is scored by one ``(rows * beam, g) x (g, K)`` matmul and a broadcast
    add, and the ``beam_size`` best pairs are kept (top-k over beam x K). With a beam of one the first
    term is the same for every candidate: ``argmin_k q[m, k] + 2 z . c_mk``, one ``addmm`` and one
    ``argmin`` per codebook (about 8 operations per codebook in all).
    """
    M, K, _ = codebooks.shape
    rows = ys.shape[0]
    step = max(1, chunk_elements // (beam_size * K))
    if beam_size == 1:
        codes = codes.clone()
        for m in range(M):
            um = u - codebooks[m][codes[:, m]] if M > 1 else torch.zeros_like(u)
            z = torch.addmm(ys, um, HJ, beta=-1)  # (rows, g)
            for r0 in range(0, rows, step):
                r = slice(r0, r0 + step)
                codes[r, m] = torch.addmm(q[m], z[r], codebooks[m].T, alpha=2).argmin(1)
            u = um + codebooks[m][codes[:, m]]
        return codes, u
    hyp, U = codes[:, None, :], u[:, None, :]  # (rows, beam, M), (rows, beam, g)
    for m in range(M):
        Um = U - codebooks[m][hyp[..., m]]  # the sum without codebook m
        z = (Um @ HJ).sub_(ys[:, None, :])
        beam = hyp.shape[1]
        keep = min(beam_size, beam * K)
        base = (Um * (z - ys[:, None, :])).sum(-1, keepdim=True)  # (rows, beam, 1)
        best = torch.empty(rows, keep, dtype=torch.int64, device=ys.device)
        for r0 in range(0, rows, step):
            r = slice(r0, r0 + step)
            f = torch.matmul(z[r], codebooks[m].T).mul_(2).add_(q[m]).add_(base[r])  # (rows, beam, K)
            best[r] = f.reshape(f.shape[0], -1).topk(keep, dim=1, largest=False).indices
        src, cw = best // K, best % K
        if beam > 1:
            hyp = hyp.gather(1, src[..., None].expand(-1, -1, M))
            Um = Um.gather(1, src[..., None].expand(-1, -1, Um.shape[-1]))
        else:
            hyp, Um = hyp.expand(-1, keep, -1), Um.expand(-1, keep, -1)
        hyp = hyp.clone()
        hyp[..., m] = cw
        U = Um + codebooks[m][cw]
    return hyp[:, 0], U[:, 0]  # top-k puts the best hypothesis first


@torch.no_grad()
def beam_search(W: Tensor, H: Tensor, codes: Tensor, codebooks: Tensor, scales: Tensor, *,
                beam_size: int = 1, block_groups: int = 16, chunk_elements: int = 1 << 27) -> Tensor:
    """Codes ``(d_out, n, M)`` no worse than ``codes`` for ``E``; group positions visited in order.

    The search runs on the row-scaled target ``X = W / s`` (``E = sum_r s_r^2 (x_r - u_r)^T H (x_r -
    u_r)``, so the codes do not depend on ``s``) and keeps ``G = (X - U) H`` current lazily, as GPTQ
    does: inside a block of ``block_groups`` positions only the block's columns of G are updated after
    each position; the block's change ``D`` reaches the later columns by one matmul
    ``G[:, later] -= D H[block, later]``. Per position: ``ys = U_J H_JJ + G_J`` and
    :func:`_search_group`.

    Args:
        W: ``(d_out, d_in)``; H: ``(d_in, d_in)``; codes: ``(d_out, n, M)``; codebooks: ``(M, K, g)``;
        scales: ``(d_out,)`` (a zero scale makes the row's codes irrelevant).
        chunk_elements: rows are scored in chunks of about this many (row, hypothesis, codeword) scores.
    """
    d_out, d_in = W.shape
    M, K, g = codebooks.shape
    n = d_in // g
    codes = codes.clone()
    s = torch.where(scales == 0, torch.ones_like(scales), scales)
    U = additive_values(codes, codebooks, torch.ones_like(s))
    G = (W / s[:, None] - U) @ H
    for b0 in range(0, n, block_groups):
        b1 = min(n, b0 + block_groups)
        B = slice(b0 * g, b1 * g)
        HJJ = _group_blocks(H, g, b0, b1)
        q = _codeword_quadratics(codebooks, HJJ)  # (P, M, K)
        UB, GB, HB = U[:, B].clone(), G[:, B], H[B, B]
        for p in range(b1 - b0):
            J = slice(p * g, (p + 1) * g)
            ys = torch.addmm(GB[:, J], UB[:, J], HJJ[p])
            codes[:, b0 + p], u = _search_group(ys, HJJ[p], q[p], codes[:, b0 + p], UB[:, J], codebooks,
                                                beam_size, chunk_elements)
            if p + 1 < b1 - b0:
                after = slice((p + 1) * g, None)
                GB[:, after].addmm_(u - UB[:, J], HB[J, after], alpha=-1)
            UB[:, J] = u
        if b1 < n:
            G[:, b1 * g:].addmm_(UB - U[:, B], H[B, b1 * g:], alpha=-1)
        U[:, B] = UB
    return codes


def _scatter_codewords(X: Tensor, codes: Tensor, K: int) -> Tensor:
    """``(M, K, g)``: ``out[m, k] = sum of X's groups (r, j) with codes[r, j, m] = k``, the adjoint of
    ``additive_values``. X: ``(d_out, n g)``; codes: ``(d_out, n, M)``."""
    d_out, n, M = codes.shape
    Xg = X.reshape(d_out * n, -1)
    out = X.new_zeros(M, K, Xg.shape[1])
    for m in range(M):
        out[m].index_add_(0, codes[..., m].reshape(-1), Xg)
    return out


def _block_jacobi_inverse(H: Tensor, codes: Tensor, scales: Tensor, K: int, g: int) -> Tensor:
    """``(M, K, g, g)`` inverses of the codebook least squares' diagonal blocks
    ``P_mk = sum_{(r, j): b_rjm = k} s_r^2 H_jj`` (plus 1e-6 of their mean diagonal; identity for
    unused codewords): the preconditioner of :func:`update_codebooks`."""
    d_out, n, M = codes.shape
    HJJ = _group_blocks(H, g, 0, n).reshape(n, g * g)
    j = torch.arange(n, device=codes.device)
    w = (scales * scales)[:, None].expand(d_out, n).reshape(-1)
    P = torch.stack([torch.bincount((codes[..., m] * n + j).reshape(-1), weights=w, minlength=K * n)
                     for m in range(M)]).reshape(M * K, n).to(H.dtype) @ HJJ
    P = P.reshape(M, K, g, g)
    tr = P.diagonal(dim1=-2, dim2=-1).mean(-1)
    eye = torch.eye(g, dtype=H.dtype, device=H.device)
    P = P + torch.where(tr > 0, 1e-6 * tr, torch.ones_like(tr))[..., None, None] * eye
    return torch.linalg.inv(P)


def fit_scales(W: Tensor, H: Tensor, U: Tensor, scales: Tensor) -> Tensor:
    """``(d_out,)`` per-row least-squares scales for ``W ~ diag(s) U`` under the H-norm:
    ``s_r = u_r^T H w_r / u_r^T H u_r`` (``scales`` kept where ``u_r^T H u_r = 0``).
    W, U: ``(d_out, d_in)``."""
    UH = U @ H
    den = (UH * U).sum(1)
    return torch.where(den > 0, (UH * W).sum(1) / den.clamp_min(torch.finfo(W.dtype).tiny), scales)


@torch.no_grad()
def update_codebooks(W: Tensor, H: Tensor, codes: Tensor, codebooks: Tensor, scales: Tensor, *,
                     steps: int = 8, rtol: float = 1e-4) -> tuple[Tensor, Tensor]:
    """``(codebooks, scales)`` no worse for ``E`` than the given ones, codes fixed.

    With the codes fixed, ``W_hat = diag(s) U(C)`` is linear in the codebooks C and in the scales s,
    so both steps are least squares under the H-norm (AQLM section 3.2, arXiv 2401.06118, takes Adam
    steps instead):

    1. scales: the closed form of :func:`fit_scales` (one matmul);
    2. codebooks: ``E(C) = x^T A x - 2 b^T x + const`` with ``A D = S^T(s (s U(D)) H)`` and
       ``b = S^T(s W H)`` (``U(D)`` the additive weight of codebooks D, ``S^T`` its adjoint
       :func:`_scatter_codewords`), solved by up to ``steps`` iterations of conjugate gradients
       preconditioned by the codewords' diagonal blocks (:func:`_block_jacobi_inverse`). Each
       iteration is one ``(d_out, d_in) x (d_in, d_in)`` matmul and lowers E by
       ``(r.z)^2 / (p.Ap)``; it stops when that falls below ``rtol`` of E.

    The result is checked against the input (returned unchanged if not better).
    """
    M, K, g = codebooks.shape
    ones = torch.ones_like(scales)
    before = float(output_error(W, additive_values(codes, codebooks, scales), H))
    s = fit_scales(W, H, additive_values(codes, codebooks, ones), scales)
    Pinv = _block_jacobi_inverse(H, codes, s, K, g)
    C = codebooks.clone()
    R = (W - additive_values(codes, C, s)) @ H
    r = _scatter_codewords(R * s[:, None], codes, K)  # b - A x: half the negative gradient
    E = float(((W - additive_values(codes, C, s)) * R).sum())
    z = (Pinv @ r[..., None])[..., 0]
    p, rz = z, float((r * z).sum())
    for _ in range(steps):
        Ap = _scatter_codewords((additive_values(codes, p, s) @ H) * s[:, None], codes, K)
        pAp = float((p * Ap).sum())
        if not pAp > 0 or not rz > 0:
            break
        alpha = rz / pAp
        C.add_(p, alpha=alpha)
        r.sub_(Ap, alpha=alpha)
        E -= rz * alpha
        if rz * alpha <= max(rtol, 1e-9) * max(E, 0.0):
            break
        z = (Pinv @ r[..., None])[..., 0]
        rz_new = float((r * z).sum())
        p, rz = z + (rz_new / rz) * p, rz_new
    after = float(output_error(W, additive_values(codes, C, s), H))
    return (C, s) if after <= before else (codebooks, scales)


@dataclass
class AdditiveResult:
    """``Q``: the dequantized weight; ``qweight``: the ``"additive"`` container; ``errors``: relative
    error ``E / tr(W H W^T)`` after the initialisation and after every round."""

    Q: Tensor
    qweight: QuantizedWeight
    errors: list[float] = field(default_factory=list)


def quantize_additive(W: Tensor, H: Tensor, *, n_codebooks: int = 2, bits: int = 8, group_size: int = 8,
                      beam_size: int = 1, kmeans_iters: int = 25, codebook_steps: int = 8,
                      max_rounds: int = 10, tol: float = 0.01, seed: int = 0, backend: str = "torch",
                      kmeans_evaluations: int = 1 << 40) -> AdditiveResult:
    """AQLM for one layer: residual k-means, then rounds of codebook/scale updates and beam search
    until a round improves the error by less than ``tol`` (relative) or after ``max_rounds``.

    Args:
        W: ``(d_out, d_in)``; H: ``(d_in, d_in)`` Hessian of the inputs.
        n_codebooks, bits, group_size: M, B, g ("2x8 g8": M = 2, B = 8, g = 8).
        beam_size: hypotheses kept by the code search (the reference's search: 8, ``tol=0.001``).
        codebook_steps: conjugate-gradient iterations of the codebook solve at most, per round.
        kmeans_iters, kmeans_evaluations: Lloyd iterations of the initialisation at most, and their work
            budget in distance evaluations (binds only for 65,536-entry codebooks on layers of more
            than 2^40 / (25 * 2^16) = 671,088 groups: 8 iterations on a 4096 x 4096 layer).
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
                                       backend=backend, max_evaluations=kmeans_evaluations)

    def rel_error() -> float:
        return float(output_error(W, additive_values(codes, C, s), H)) / norm

    errors = [rel_error()]
    for _ in range(max_rounds):
        C, s = update_codebooks(W, H, codes, C, s, steps=codebook_steps)
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
