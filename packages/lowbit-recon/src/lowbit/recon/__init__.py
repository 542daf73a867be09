"""lowbit.recon: reconstruction. The GPTQ error-feedback loop with a pluggable column quantizer,
round-to-nearest with the same quantizer, and block output fine-tuning (learned reconstruction)."""

from .finetune import FinetuneReport, block_error, finetune_block, split_batches
from .gptq import (
                   ColumnQuantizer,
                   GPTQResult,
                   check_finite,
                   hessian_error,
                   inverse_cholesky,
                   quantize_weight,
                   round_to_nearest,
)
from .lrq import LRQWeight, lrq_codes, round_ste
from .uniform import UniformColumnQuantizer, check_group_size

__version__ = "0.1.0"

__all__ = ["ColumnQuantizer", "FinetuneReport", "GPTQResult", "UniformColumnQuantizer", "block_error", "check_finite",
           "check_group_size", "finetune_block", "hessian_error", "inverse_cholesky", "quantize_weight",
           "round_to_nearest", "split_batches"]
__all__ += ["LRQWeight", "lrq_codes", "round_ste"]
