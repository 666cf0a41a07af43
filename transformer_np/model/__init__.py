r"""The models built from the formulas: configuration, params trees, layers, stacks, losses, checkpoints.

``config`` (the frozen :class:`TransformerConfig`), ``params`` (the tree's layout and initial values),
``layers`` (sublayer, encoder and decoder layers), ``stacks`` (one loop for every stack), ``models`` (the
encoder-decoder, decoder-only LM and encoder classifier, as functions and classes), ``losses`` (each with its
gradient), ``checkpoint`` (.npz, no pickle, atomic), ``weight_names`` (torch and Hugging Face names of our
parameters).  Imports only from ``core``.
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TransformerConfig
from .layers import decoder_layer, encoder_layer
from .losses import classifier_loss, lm_loss, transformer_loss
from .models import (
    Classifier,
    DecoderLM,
    Model,
    Transformer,
    classifier_logits,
    decode,
    embed,
    encode,
    lm_logits,
    load_model,
    transformer_logits,
)
from .params import init_params, param_shapes
from .stacks import decoder, encoder

__all__ = [
    "Classifier", "DecoderLM", "Model", "Transformer", "TransformerConfig", "classifier_logits", "classifier_loss",
    "decode", "decoder", "decoder_layer", "embed", "encode", "encoder", "encoder_layer", "init_params",
    "lm_logits", "lm_loss", "load_checkpoint", "load_model", "param_shapes", "save_checkpoint",
    "transformer_logits", "transformer_loss",
]
