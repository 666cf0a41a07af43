"""``bench cost``: the cost model's predictions against this machine's measurements.

This machine is measured first (np.matmul peak, np.copyto bandwidth: efficient.cost_model.this_machine), then:

- SmolLM2-135M prefill of T = 128 … 1024 tokens (the last position's logits), one sequence;
- SmolLM2-135M decode steps at batch B = 1 … 64 over a cache of 256 positions (filled with random keys and
  values: a step's time does not depend on them);
- the GPT-2-shaped encoder forward (12 layers, C = 768, S = 512) of ``bench forward``.

For each: FLOPs and bytes from the cost model, the roofline time max(FLOPs / peak, bytes / bandwidth), the
measured time (best of ``repeat``), measured / predicted, MFU and MBU, and which resource bounds the step.
Figure: the roofline with the measured points (figures/bench_cost_roofline.png).  Numbers, not tests.
"""

from __future__ import annotations

import numpy as np

from ...decoding.cache import KVCache, LayerCache
from ...efficient import cost_model as cm
from ...efficient.cost_model import best_time
from ...model.config import TransformerConfig
from ...model.params import init_params
from ...model.stacks import encoder
from ...pretrained.llama import LlamaConfig, init_llama_params, llama_logits, smollm2_path
from ...viz import plots
from ..llm import load_llm
from .table import Column, print_table


def _smollm2():
    """SmolLM2's weights when installed; else random weights of its shape (the cost is the same)."""
    try:
        smollm2_path()
        m = load_llm("smollm2")
        return m.params, m.config, "SmolLM2-135M"
    except ImportError:
        cfg = LlamaConfig()
        return init_llama_params(cfg, 0), cfg, "SmolLM2-135M shape (random weights: not installed)"


def filled_cache(cfg, batch, length, rng):
    """A cache of ``length`` positions of random float32 keys and values per layer, with room for one more."""
    shape = (batch, cfg.n_kv_heads, length, cfg.d_head)
    kv = lambda: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
    return KVCache(LayerCache(kv(), kv(), capacity=length + 1) for _ in range(cfg.n_layers))


def row(kind, size, flops, nbytes, seconds, hw):
    predicted = cm.roofline_time(flops, nbytes, hw)
    return dict(kind=kind, size=size, flops=flops, bytes=nbytes, intensity=flops / nbytes, predicted_s=predicted,
                measured_s=seconds, ratio=seconds / predicted, mfu=cm.mfu(flops, seconds, hw),
                mbu=cm.mbu(nbytes, seconds, hw), bound=cm.bound_by(flops, nbytes, hw))


def _size(r):
    return f"{dict(prefill='T', decode='B').get(r['kind'], 'S')}={r['size']}"


COLUMNS = [Column("step", "kind", 14), Column("size", _size, 6), Column("GFLOP", lambda r: r["flops"] / 1e9, 8, ".2f"),
           Column("MB", lambda r: r["bytes"] / 1e6, 8, ".1f"), Column("FLOP/B", "intensity", 7, ".1f"),
           Column("roofline ms", lambda r: 1e3 * r["predicted_s"], 11, ".2f"),
           Column("measured ms", lambda r: 1e3 * r["measured_s"], 11, ".2f"), Column("ratio", "ratio", 6, ".2f"),
           Column("MFU", lambda r: f"{100 * r['mfu']:.0f}%", 5), Column("MBU", lambda r: f"{100 * r['mbu']:.0f}%", 5),
           Column(" bound", lambda r: " " + r["bound"], 9, align="<")]


def bench_cost(quick=False, repeat=3, plot=None, print_fn=print):
    hw = cm.this_machine(quick=quick)
    print_fn(f"{hw.name}: matmul peak {hw.peak_flops / 1e9:.1f} GFLOP/s, copy bandwidth {hw.bandwidth / 1e9:.1f} GB/s"
             f" -> critical intensity {hw.critical_intensity:.1f} FLOP/byte, critical decode batch (float32) "
             f"{cm.critical_batch_size(hw, 'float32'):.0f}")
    rng = np.random.default_rng(0)
    params, cfg, name = _smollm2()
    shape = cm.ModelShape.from_config(cfg)
    rows = []
    for T in (32, 64) if quick else (128, 256, 512, 1024):
        ids = rng.integers(0, cfg.vocab_size, (1, T))
        t = best_time(lambda ids=ids: llama_logits(params, ids, cfg, last_only=True), repeat)
        f, b, _ = cm.prefill_cost(shape, 1, T, hw)
        rows.append(row("prefill", T, f, b, t, hw))
    context = 32 if quick else 256
    for B in (1, 4) if quick else (1, 4, 16, 64):
        ids = rng.integers(0, cfg.vocab_size, (B, 1))

        def step(ids=ids, B=B):
            cache = filled_cache(cfg, B, context - 1, rng)

            def one():  # the step over context - 1 cached positions, rolled back after (O(1): a length)
                cache.truncate(context - 1)
                return llama_logits(params, ids, cfg, cache=cache)

            return one

        t = best_time(step(), repeat)
        f, b, _ = cm.decode_cost(shape, B, context, hw)
        rows.append(row("decode", B, f, b, t, hw))
    gpt2 = TransformerConfig(d_model=768, n_heads=12, n_encoder_layers=2 if quick else 12, n_decoder_layers=0,
                             d_ff=3072, vocab_size=1, max_len=1024, activation="gelu", norm_first=True,
                             architecture="encoder-classifier")
    S = 64 if quick else 512
    enc = init_params(gpt2, 0)["encoder"]
    x = rng.standard_normal((1, S, 768), dtype=np.float32)
    t = best_time(lambda: encoder(x, enc, gpt2), repeat)
    gshape = cm.ModelShape.from_config(gpt2)
    f = cm.forward_flops(gshape, 1, S, logits="none")
    b = cm.weight_bytes(gshape) + x.nbytes  # every weight read once, the input read once
    rows.append(row("GPT-2 encoder", S, f, b, t, hw))
    print_fn(f"{name}, float32 weights and cache; GPT-2-shaped encoder with random weights")
    print_table(rows, COLUMNS, print_fn)
    result = dict(hardware=dict(name=hw.name, peak_flops=hw.peak_flops, bandwidth=hw.bandwidth), model=name,
                  decode_context=context, rows=rows)
    if plot:
        plots.save(plots.roofline(hw, rows), plot)
        print_fn(f"wrote {plot}")
    return result
