"""Plot helpers shared by the notebooks and ``python -m transformer_np figures``, one module per chapter.

Each function draws one picture onto a new (or given) matplotlib figure and returns the figure; data go
through ``to_numpy`` first, so arrays of any backend can be drawn.  Every picture is importable from here
(``plots.roofline``), as from the chapter's module (``plots.cost.roofline``).
"""

from __future__ import annotations

from .attention import attention_kinds_cost, attention_weights, head_grid, layer_costs, masks, softmax_saturation
from .base import heatmap, plain_log_ticks, save
from .blocks import activations, encoder_decoder_attention, gradient_norms, layer_norm_statistics, residual_stream_norms
from .compression import (
    activation_outliers,
    awq_search,
    gptq_vs_rtn,
    kl_by_method,
    layer_errors,
    mask_patterns,
    paired_token_scores,
    perplexity_vs_bits,
    perplexity_vs_sparsity,
    q4_k_superblock,
    quantization_errors,
    rounding_grid,
)
from .cost import fusion, layout_comm_times, layout_owners, roofline
from .decoding import beam_tree, cache_growth, decode_flops, decode_speed, sampling_distributions
from .modern_llm import (
    attention_sink,
    bpe_steps,
    gqa_sharing,
    kv_by_layer,
    next_token_bar,
    norms_compared,
    quant_block,
    rope_rotation,
    window_vs_global,
)
from .positions import positional_encoding_heatmap, positional_encoding_waves, positional_similarity
from .pretrained import layer_head_scores, similarity_matrix
from .serving import (
    acceptance_by_position,
    batching_timeline,
    block_tables,
    draft_head_training,
    latency_percentiles,
    memory_vs_length,
    online_softmax,
    prefill_timeline,
    prefix_tree,
    speculative_tokens,
)
from .training import label_smoothing_targets, learning_rate_schedule, lm_runs, sweep, training_curves, training_run

__all__ = [
    "plain_log_ticks",
    "heatmap",
    "save",
    "positional_encoding_heatmap",
    "positional_encoding_waves",
    "positional_similarity",
    "softmax_saturation",
    "layer_costs",
    "attention_kinds_cost",
    "attention_weights",
    "masks",
    "head_grid",
    "residual_stream_norms",
    "gradient_norms",
    "layer_norm_statistics",
    "activations",
    "encoder_decoder_attention",
    "decode_speed",
    "decode_flops",
    "cache_growth",
    "sampling_distributions",
    "beam_tree",
    "layer_head_scores",
    "similarity_matrix",
    "learning_rate_schedule",
    "training_run",
    "lm_runs",
    "training_curves",
    "label_smoothing_targets",
    "sweep",
    "norms_compared",
    "rope_rotation",
    "gqa_sharing",
    "quant_block",
    "bpe_steps",
    "attention_sink",
    "next_token_bar",
    "kv_by_layer",
    "window_vs_global",
    "online_softmax",
    "memory_vs_length",
    "block_tables",
    "batching_timeline",
    "speculative_tokens",
    "draft_head_training",
    "acceptance_by_position",
    "prefix_tree",
    "prefill_timeline",
    "latency_percentiles",
    "rounding_grid",
    "quantization_errors",
    "activation_outliers",
    "awq_search",
    "gptq_vs_rtn",
    "kl_by_method",
    "q4_k_superblock",
    "mask_patterns",
    "paired_token_scores",
    "perplexity_vs_bits",
    "perplexity_vs_sparsity",
    "layer_errors",
    "roofline",
    "layout_comm_times",
    "layout_owners",
    "fusion",
]
