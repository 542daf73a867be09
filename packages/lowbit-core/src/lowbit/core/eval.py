"""Perplexity by the reference protocol.

    PPL = exp( (1 / (W (T - 1))) * sum_w sum_{t=1}^{T-1} -log p(x_{w,t} | x_{w,<t}) )

over W non-overlapping windows of T tokens: every predicted token of every window counts once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def window_nll(model: nn.Module, ids: Tensor) -> Tensor:
    """Summed next-token NLL of each window: ``(B,)`` float64 for ``ids`` of shape ``(B, T)``."""
    logits = model(ids, use_cache=False).logits
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    return nll.double().sum(1)


@torch.no_grad()
def perplexity(model: nn.Module, windows: Tensor, device: torch.device | str, batch_size: int = 1,
               progress: Callable[[Iterable[int]], Iterable[int]] | None = None) -> float:
    """Perplexity of ``model`` (moved to ``device``) on ``windows`` ``(W, T)``; NaN when the
    summed NLL is not finite."""
    model.to(device)
    starts: Iterable[int] = range(0, windows.shape[0], batch_size)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for s in (progress(starts) if progress else starts):
        total += window_nll(model, windows[s: s + batch_size].to(device)).sum()
    n = windows.shape[0] * (windows.shape[1] - 1)
    value = total.item() / n
    if not math.isfinite(value):
        return float("nan")
    return math.exp(value)
