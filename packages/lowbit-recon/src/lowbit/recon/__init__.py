"""lowbit.recon: reconstruction. The GPTQ error-feedback loop with a pluggable column quantizer,
round-to-nearest with the same quantizer, and (later) learned block reconstruction."""

from .gptq import (
                   ColumnQuantizer,
                   GPTQResult,
                   check_finite,
                   hessian_error,
                   inverse_cholesky,
                   quantize_weight,
                   round_to_nearest,
)
from .uniform import UniformColumnQuantizer, check_group_size

__version__ = "0.1.0"

__all__ = ["ColumnQuantizer", "GPTQResult", "UniformColumnQuantizer", "check_finite", "check_group_size",
           "hessian_error", "inverse_cholesky", "quantize_weight", "round_to_nearest"]
