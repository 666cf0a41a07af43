"""Blockwise attention with the online softmax (FlashAttention's idea), the efficient-inference chapter's name for
:mod:`transformer_np.core.blockwise` — the formula lives in core, where a model's forward reaches it (a long
prompt's prefill attends by tiles: ``attention(..., path="auto")``)."""

from ..core.blockwise import (
    ATTENTION_PATHS,
    AUTO_SCORES_BYTES,
    BLOCK,
    attention,
    blockwise_attention,
    blockwise_attention_backward,
    blockwise_attention_forward,
)

__all__ = ["ATTENTION_PATHS", "AUTO_SCORES_BYTES", "BLOCK", "attention", "blockwise_attention",
           "blockwise_attention_backward", "blockwise_attention_forward"]
