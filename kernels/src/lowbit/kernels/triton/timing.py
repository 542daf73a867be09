"""Timing launches the way decoding runs them, for the tuner (:func:`lowbit.kernels.triton.common.choose`)
and the benchmarks: calls rotating through copies of a layer's state that together exceed twice the L2
cache (so the weights come from memory), captured in one CUDA graph (no launch overhead between calls).
Needs only torch: ``benchmarks/gpu_kernels.py`` imports it before choosing Triton's interpreter.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import fields, is_dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from lowbit.kernels.triton.common import Config

log = logging.getLogger(__name__)


def map_tensors(obj: object, fn: Callable[[Tensor], Tensor]) -> object:
    """``obj`` (a kernel state: dataclasses, lists, tensors) with ``fn`` applied to every tensor."""
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, list):
        return [map_tensors(v, fn) for v in obj]
    if is_dataclass(obj) and not isinstance(obj, type):
        return replace(obj, **{f.name: map_tensors(getattr(obj, f.name), fn) for f in fields(obj) if f.init})
    return obj


def state_bytes(obj: object) -> int:
    """Bytes of every tensor of a kernel state."""
    total = 0

    def add(t: Tensor) -> Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    map_tensors(obj, add)
    return total


def n_copies(nbytes: int, l2: int, cap: int = 64) -> int:
    """Copies of a state of ``nbytes`` that together exceed twice an L2 cache of ``l2`` bytes (2..``cap``), so
    that calls rotating through them read their weights from memory, as decoding does."""
    return max(2, min(cap, math.ceil(2 * l2 / max(nbytes, 1)) + 1))


def past_l2(st: object, device: torch.device) -> list:
    """``st`` and enough copies of it (:func:`n_copies`) to rotate through past ``device``'s L2."""
    l2 = torch.cuda.get_device_properties(device).L2_cache_size
    return [st] + [map_tensors(st, torch.clone) for _ in range(n_copies(state_bytes(st), l2) - 1)]


def graph_us(calls: Sequence[Callable[[], object]], replays: int = 20) -> float:
    """Microseconds per call of ``calls`` (one per weight copy) on the current CUDA device: each run once on
    a side stream (compilation, allocation), then ``max(1, 64 // len(calls))`` rounds of them captured in
    one CUDA graph (no launch overhead between calls, as in graphed decoding), replayed once untimed and
    ``replays`` times timed. Raises where a call cannot be captured."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for c in calls:
            c()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    reps = max(1, 64 // len(calls))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            for c in calls:
                c()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return 1e3 * start.elapsed_time(end) / (replays * reps * len(calls))


def time_configs(configs: Sequence[Config], launch: Callable[[object, Config], object], states: list,
                 replays: int = 20) -> list[float]:
    """Microseconds per call of each configuration, ``launch(state, config)`` rotating through ``states``
    (:func:`past_l2`) in one CUDA graph (:func:`graph_us`); ``inf`` for one that does not compile, fit
    or capture."""
    times = []
    for c in configs:
        try:
            times.append(graph_us([lambda s=s, c=c: launch(s, c) for s in states], replays))
        except Exception as e:  # a configuration that does not compile or fit: skip it
            log.debug("config %s failed: %s", c, e)
            times.append(math.inf)
    return times
