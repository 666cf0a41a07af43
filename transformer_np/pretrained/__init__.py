r"""Real pretrained models in NumPy, read from their own files with readers written here: ``safetensors``
(no pickle; every offset checked first) and ``gguf`` (llama.cpp's format, memory-mapped, with the dequantizers
of its block formats); ``wordpiece`` (BERT's tokenizer) and ``bpe`` (byte-level BPE and chat templates);
``minilm`` (all-MiniLM-L6-v2 sentence embeddings) and ``llama`` (the Llama architecture, SmolLM2-135M-Instruct),
both from the core formulas; ``sentences`` holds the bundled texts; ``registry`` loads any model the package
knows by name (``transformer_np.load``).  Nothing is downloaded.  Imports from
``core``, ``model`` and ``decoding``.
"""

from .bpe import BPETokenizer, StreamDecoder, render_chat
from .gguf import GGUFError, dequantize, read_gguf
from .llama import LlamaConfig, LlamaModel, llama_logits, load_llama_gguf, load_smollm2, smollm2_path
from .minilm import INSTALL, MiniLM, bert_params, default_path, load_minilm, reference_embeddings
from .registry import NAMES, load
from .safetensors import SafetensorsError, load_safetensors, read_header
from .wordpiece import WordPieceTokenizer

__all__ = ["BPETokenizer", "GGUFError", "INSTALL", "LlamaConfig", "LlamaModel", "MiniLM", "NAMES", "SafetensorsError",
           "StreamDecoder", "WordPieceTokenizer", "bert_params", "default_path", "dequantize", "llama_logits",
           "load", "load_llama_gguf", "load_minilm", "load_safetensors", "load_smollm2", "read_gguf", "read_header",
           "reference_embeddings", "render_chat", "smollm2_path"]
