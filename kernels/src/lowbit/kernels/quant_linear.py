"""QuantLinear: an ``nn.Module`` holding a packed quantized weight and calling the selected kernel.

The packed tensors of :mod:`lowbit.core.storage` are registered buffers (so ``state_dict`` and
safetensors see exactly the checkpoint's tensors, named ``<module>.<storage name>``); the storage
meta (format, shape, widths) is a plain attribute, saved in the checkpoint's ``quantization_config``.
Each forward picks a kernel from :mod:`lowbit.kernels.dispatch` for (format, device, rows of x) and
keeps that kernel's prepared layout (the reference's is the dense ``W_hat``) until the buffers change.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lowbit.core.formats import QuantizedWeight
from lowbit.core.storage import Meta, Tensors, decode, encode

from .dispatch import Kernel, select


class QuantLinear(nn.Module):
    """``y = x @ W_hat^T + b`` for a quantized ``W_hat`` ``(out_features, in_features)``.

    Args:
        meta: storage meta of the weight; tensors: its packed tensors; bias: optional ``(out,)``.
        kernel: force a kernel by name (e.g. ``"reference"``); None picks per call.
    """

    def __init__(self, meta: Meta, tensors: Tensors, bias: Tensor | None = None, kernel: str | None = None) -> None:
        super().__init__()
        self.meta = meta
        self.out_features, self.in_features = int(meta["shape"][0]), int(meta["shape"][1])
        self.kernel = kernel
        self._names = sorted(tensors)
        for k in self._names:
            self.register_buffer(k, tensors[k])
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None
        self._state: dict[str, tuple[int, Any]] = {}

    @classmethod
    def from_qweight(cls, qw: QuantizedWeight, bias: Tensor | None = None, kernel: str | None = None) -> QuantLinear:
        meta, tensors = encode(qw)
        return cls(meta, tensors, bias, kernel)

    def packed(self) -> Tensors:
        return {k: getattr(self, k) for k in self._names}

    def qweight(self) -> QuantizedWeight:
        """The decoded QuantizedWeight (its ``dequantize()`` is the reference weight)."""
        return decode(self.meta, {k: v.cpu() for k, v in self.packed().items()})

    def _buffers_key(self) -> int:
        return hash(tuple((v.data_ptr(), v._version) for v in self.packed().values()))

    def prepared(self, k: Kernel) -> Any:
        """Kernel ``k``'s layout of this weight, built once (again if the buffers were replaced)."""
        v = self._buffers_key()
        hit = self._state.get(k.name)
        if hit is None or hit[0] != v:
            hit = (v, k.prepare(self.qweight()))
            self._state[k.name] = hit
        return hit[1]

    def forward(self, x: Tensor) -> Tensor:
        x2 = x.reshape(-1, self.in_features)
        k = select(self.meta, x.device, x2.shape[0], self.kernel)
        y = k.run(self.prepared(k), x2)
        if self.bias is not None:
            y = y + self.bias.to(y)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, format={self.meta['format']}, "
                f"bits={self.meta.get('bits')}, kernel={self.kernel or 'auto'}")


def replace_linears(model: nn.Module, layers: dict[str, QuantLinear]) -> None:
    """Put each ``QuantLinear`` in place of the module of the same (model-level) name."""
    for name, ql in layers.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if not isinstance(getattr(parent, child, None), nn.Linear):
            raise ValueError(f"{name} is not a linear layer of this model")
        setattr(parent, child, ql)


@torch.no_grad()
def quantize_model_layers(model: nn.Module, qweights: dict[str, QuantizedWeight],
                          kernel: str | None = None) -> None:
    """Replace the linears named in ``qweights`` by QuantLinears of those weights (in memory)."""
    layers = {}
    for name, qw in qweights.items():
        lin = model.get_submodule(name)
        bias = lin.bias if isinstance(lin, nn.Linear) else None
        layers[name] = QuantLinear.from_qweight(qw, bias, kernel)
    replace_linears(model, layers)
