"""GPTQ (arXiv 2210.17323): uniform min-max grids with Hessian error feedback.

    python recipes/gptq.py --bits 3 --group-size 64
    python recipes/gptq.py --bits 4 --act-bits 8 --act-granularity token     # W4A8, per-token activations

With ``--act-bits``, each block's linear inputs are fake-quantized after its weights are (the
Hessians are of the unquantized inputs to the block, which come from the already-quantized blocks
with their quantized activations), and stay so for the next blocks and the evaluation.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from lowbit.core.hf import BlockContext
from lowbit.core.recipe import ActQuantConfig, arg, codes_only, main, quantize_linears, run_recipe
from lowbit.recon import UniformColumnQuantizer, hessian_error, quantize_weight, round_to_nearest


@dataclasses.dataclass(frozen=True)
class GPTQConfig(ActQuantConfig):
    """GPTQ: uniform grids per row (and group) with error feedback."""

    act_order: bool = arg(True, "process columns by decreasing Hessian diagonal")
    static_groups: bool = arg(True, "fit group grids before the loop, in the original column order")
    blocksize: int = arg(128, "columns per lazy-update block")
    percdamp: float = arg(0.01, "damping as a fraction of mean(diag H); raised automatically on failure")
    compare_rtn: bool = arg(False, "also measure round-to-nearest's Hessian-weighted error per layer")

    def validate(self) -> None:
        super().validate()
        self.integer_bits()


def run(cfg: GPTQConfig) -> dict[str, Any]:
    errors: list[tuple[float, float]] = []

    def layer(W, H):
        make = lambda: UniformColumnQuantizer(cfg.integer_bits(), cfg.groups, cfg.static_groups)  # noqa: E731
        r = quantize_weight(W, H, make(), blocksize=cfg.blocksize, percdamp=cfg.percdamp,
                            act_order=cfg.act_order)
        if cfg.compare_rtn:
            errors.append((r.error, hessian_error(W, round_to_nearest(W, make())[0], H)))
        return r.Q, r.qweight

    def block(ctx: BlockContext):
        made = quantize_linears(ctx, layer)
        cfg.quantize_activations(ctx)
        return made

    def extra(_: dict[str, Any]) -> dict[str, Any]:
        if not errors:
            return {}
        return {"layer_errors": {"gptq_le_rtn": sum(g <= r for g, r in errors), "layers": len(errors),
                                 "gptq_over_rtn": [g / r for g, r in errors]}}

    name = "gptq" if cfg.act_bits is None else f"gptq_{cfg.act_label}"
    return run_recipe(cfg, name, block, paper_bits=codes_only, extra=extra)


if __name__ == "__main__":
    sys.exit(main(run, GPTQConfig))
