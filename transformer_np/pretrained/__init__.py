r"""Real pretrained models in NumPy, read from their own files with readers written here: ``safetensors``
(no pickle; every offset checked first), ``wordpiece`` (BERT's tokenizer) and ``minilm``
(all-MiniLM-L6-v2 sentence embeddings, from the core layers); ``sentences`` holds the bundled texts.
Nothing is downloaded.  Imports from ``core`` and ``model``.
"""

from .minilm import INSTALL, MiniLM, bert_params, default_path, load_minilm
from .safetensors import SafetensorsError, load_safetensors, read_header
from .wordpiece import WordPieceTokenizer

__all__ = ["INSTALL", "MiniLM", "SafetensorsError", "WordPieceTokenizer", "bert_params", "default_path",
           "load_minilm", "load_safetensors", "read_header"]
