r"""Training in NumPy: Adam with the paper's schedule (``optim``), three offline tasks with their tokenizers
(``tasks``), the loop with resumable checkpoints and evaluation (``loop``), and the trained models that ship
with the package (``shipped``, files in ``checkpoints/``).  Imports from ``core``, ``model`` and ``decoding``.
"""

from .loop import NonFiniteLoss, evaluate, load_training, loss_and_grads, predict, save_training, train
from .optim import adam_init, adam_step, clip_by_global_norm, global_norm, noam_lr
from .shipped import export_trained, load_trained, shipped_path
from .tasks import BOS, EOS, PAD, UNK, get_task

__all__ = ["BOS", "EOS", "NonFiniteLoss", "PAD", "UNK", "adam_init", "adam_step", "clip_by_global_norm",
           "evaluate", "export_trained", "get_task", "global_norm", "load_trained", "load_training",
           "loss_and_grads", "noam_lr", "predict", "save_training", "shipped_path", "train"]
