"""``python -m transformer_np distill-draft --out FILE``: train SmolLM2's speculative draft head (EAGLE) in NumPy.

The target runs once over the shipped training texts (its own answers to the package's training prompts, and
standard-library docstrings) and keeps its features; the head is then trained on them with the distillation loss
(efficient/draft.py), a few held-out texts scored at the end.  The package's own head
(``transformer_np/efficient/data/draft_head_smollm2.npz``) was made by this command with its defaults."""

from __future__ import annotations

import os
import time

import numpy as np

from ..efficient.draft import (
    HeadConfig,
    distill,
    distill_loss,
    embed,
    readout_rows,
    teacher_features,
    training_sequences,
)
from ..model.checkpoint import atomic_write
from .llm import load_llm
from .options import check_output_file, positive_float, positive_int, progress_bar, writing

HELP = "train SmolLM2's draft head for speculative decoding (distillation in NumPy)"
ERRORS = (ImportError, FileNotFoundError, ValueError)
HELD_OUT = 16  # every 16th training text is held out and scored after training


def add_arguments(parser):
    parser.add_argument("--out", required=True, metavar="FILE", help="where to write the head (.npz)")
    parser.add_argument("--steps", type=positive_int, default=1500, help="training steps, one text each "
                                                                         "(default: %(default)s)")
    parser.add_argument("--rows", type=positive_int, default=8192,
                        help="vocabulary rows the head reads out: the most frequent training tokens "
                             "(default: %(default)s)")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate (default: %(default)s)")
    parser.add_argument("--reg-weight", type=float, default=1.0,
                        help="λ, the weight of the feature-regression term (default: %(default)s)")
    parser.add_argument("--max-tokens", type=positive_int, default=256,
                        help="tokens per training text, longer ones cut (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and text order (default: %(default)s)")
    parser.add_argument("--noise", type=float, default=0.0,
                        help="half-width of the uniform noise added to the head's input features in training "
                             "(EAGLE's; default: %(default)s)")
    parser.add_argument("--features", metavar="FILE",
                        help="keep the teacher's features in this .npz file: read if it holds these texts' "
                             "features, else computed and written (re-training with other options skips the teacher)")
    parser.add_argument("--texts", type=positive_int, default=None,
                        help="train on the first N training texts only (a quick run; default: all)")


def run(args, print_fn=print):
    check_output_file("--out", args.out)
    check_output_file("--features", args.features)
    model = load_llm("smollm2")
    sequences = training_sequences(model, args.max_tokens)[: args.texts]
    train = [s for i, s in enumerate(sequences) if i % HELD_OUT]
    held = [s for i, s in enumerate(sequences) if not i % HELD_OUT]
    print_fn(f"{len(sequences)} texts, {sum(map(len, sequences)):,} tokens ({len(held)} held out)")
    features = _teacher(model, sequences, args.features, print_fn)
    train_f = [f for i, f in enumerate(features) if i % HELD_OUT]
    cfg = HeadConfig.for_target(model.config, rows=args.rows)
    t0 = time.perf_counter()

    def report(step, loss, parts):
        if (step + 1) % 100 == 0:
            print_fn(f"step {step + 1}: loss {loss:.3f}, KL {parts['kl']:.3f}, SmoothL1 {parts['reg']:.4f}, "
                     f"top-1 agreement {parts['top1']:.2f} ({time.perf_counter() - t0:.0f} s)")

    head, history = distill(model, train, train_f, cfg, steps=args.steps, lr=args.lr, reg_weight=args.reg_weight,
                            noise=args.noise, seed=args.seed, on_step=report)
    train_s = time.perf_counter() - t0
    w_rows = readout_rows(model, head.rows)
    scores = [distill_loss(head.params, cfg, features[i][None], embed(model, [s]), w_rows, args.reg_weight)[2]
              for i, s in enumerate(sequences) if not i % HELD_OUT]
    held_kl, held_top1 = (float(np.mean([s[k] for s in scores])) for k in ("kl", "top1"))
    head.info.update(train_seconds=round(train_s), held_out_texts=len(held), held_out_kl=round(held_kl, 4),
                     held_out_top1=round(held_top1, 4), max_tokens=args.max_tokens,
                     final_train_loss=round(float(np.mean(history["loss"][-100:])), 4))
    with writing("--out", args.out):
        head.save(args.out)
    print_fn(f"trained in {train_s:.0f} s; held-out texts: KL {held_kl:.3f}, the head's top token is the target's "
             f"{held_top1:.0%} of the time")
    print_fn(f"wrote {args.out}: {head!r}")
    return 0


def _teacher(model, sequences, path, print_fn):
    """The teacher's features of each text: read from ``path`` (.npz) when it holds these very texts (their ids are
    stored with the features), else computed — and written to ``path`` if one is given."""
    ids = np.concatenate([np.asarray(s, np.int32) for s in sequences])
    cuts = np.cumsum([len(s) for s in sequences])[:-1]
    if path is not None and os.path.exists(path):
        with np.load(path, allow_pickle=False) as z:
            if (set(z.files) == {"ids", "features"} and np.array_equal(z["ids"], ids)
                    and z["features"].shape == (len(ids), model.config.d_model)):
                print_fn(f"teacher features read from {path}")
                return np.split(z["features"], cuts)
        print_fn(f"{path} holds other texts' features: computing these")
    t0 = time.perf_counter()
    features = []
    with progress_bar(len(sequences), "teacher features", "text") as update:
        for s in sequences:
            features += teacher_features(model, [s])
            update(1)
    print_fn(f"teacher features: {time.perf_counter() - t0:.0f} s")
    if path is not None:
        with writing("--features", path):
            atomic_write(path, lambda f: np.savez(f, ids=ids, features=np.concatenate(features)))
    return features
