# %% [markdown]
# # 8. Training in NumPy: backward passes, Adam, and models that really work
#
# A model learns by gradient descent on a loss. Every forward function of chapters 1–5 has a backward beside
# it that applies the chain rule to its own lines in reverse (`layer_norm_forward` / `layer_norm_backward`,
# `multi_head_attention_forward` / `_backward`, …); a model's backward is its forward's call list reversed.
# Every backward is checked against finite differences in float64 and against torch autograd.
#
# The loss is cross-entropy with label smoothing $\varepsilon$ (paper §5.4); the optimiser is Adam with the
# paper's schedule (eq. 3):
#
# $$L = -\frac1N\sum_t\sum_v q_{t,v}\log p_{t,v},\quad q_t = (1-\varepsilon)\,\mathrm{onehot}(y_t)+\frac{\varepsilon}{V}
#   \qquad lrate = d_{model}^{-0.5}\min(step^{-0.5},\ step\cdot warmup^{-1.5})$$
#
# Label smoothing moves ε of the target's probability from the right class to all V classes equally. The
# loss then cannot reach 0: its minimum, reached when the prediction equals q, is the entropy
# $H(q) = -\sum_v q_v \log q_v$ (`nn.smoothed_target_entropy`), the floor drawn under the loss curves below.

# %%
import numpy as np

import transformer_np as tn
from transformer_np import viz
from transformer_np.core import nn
from transformer_np.model import transformer_loss
from transformer_np.training import evaluate, load_trained, predict, tasks

viz.label_smoothing_targets(10, 0.1, target=3);

# %% [markdown]
# ## A backward, checked live
#
# Layer norm's backward, against central differences of the "fake loss" $\sum(\text{out}\cdot d\text{out})$:

# %%
rng = np.random.default_rng(0)
x, gamma, beta, dout = rng.standard_normal((3, 8)), rng.standard_normal(8), rng.standard_normal(8), rng.standard_normal((3, 8))
out, cache = nn.layer_norm_forward(x, gamma, beta)
dx, dgamma, dbeta = nn.layer_norm_backward(dout, cache)
numeric = np.zeros_like(x)
for i in np.ndindex(x.shape):
    e = np.zeros_like(x)
    e[i] = 1e-6
    numeric[i] = (np.sum(nn.layer_norm(x + e, gamma, beta) * dout)
                  - np.sum(nn.layer_norm(x - e, gamma, beta) * dout)) / 2e-6
print(f"max |analytic - numeric| = {np.abs(dx - numeric).max():.1e}")
assert np.abs(dx - numeric).max() < 1e-8

# %% [markdown]
# And the whole encoder-decoder: the gradient of one embedding entry, analytic vs numeric.

# %%
cfg = tn.TransformerConfig.tiny(dtype="float64", pad_id=0)
params = tn.init_params(cfg, seed=0)
src, tgt = np.array([[3, 4, 5, 6]]), np.array([[1, 7, 8, 2]])
loss, grads = transformer_loss(params, src, tgt[:, :-1], tgt[:, 1:], cfg, label_smoothing=0.1)
table = params["embed"]["table"]
old = table[4, 2]
table[4, 2] = old + 1e-6
up = transformer_loss(params, src, tgt[:, :-1], tgt[:, 1:], cfg, label_smoothing=0.1)[0]
table[4, 2] = old - 1e-6
down = transformer_loss(params, src, tgt[:, :-1], tgt[:, 1:], cfg, label_smoothing=0.1)[0]
table[4, 2] = old
print(f"dL/dE[4, 2]: analytic {grads['embed']['table'][4, 2]:.10f}, numeric {(up - down) / 2e-6:.10f}")
assert abs(grads["embed"]["table"][4, 2] - (up - down) / 2e-6) < 1e-8

# %% [markdown]
# ## The schedule

# %%
viz.learning_rate_schedule(8000, d_model=64);

# %% [markdown]
# ## Three tasks, generated offline, and the shipped models
#
# `python -m transformer_np train --task NAME` trains each on 2 CPU cores in a few minutes and writes a
# checkpoint; the trained models ship in `transformer_np/training/checkpoints/`. Their held-out examples never appear
# in training (for dates, the held-out *dates* are unseen in every format).

# %%
shipped = {name: load_trained(name) for name in ("reverse", "dates", "sentiment")}
for name, (task, params_, history, metrics) in shipped.items():
    print(f"{name:10s} {tn.count_params(params_):7,d} parameters, {history['step'][-1]} steps, "
          f"held-out accuracy {metrics['accuracy']:.3f}" + (f", on negated sentences {metrics['negated_accuracy']:.3f}"
                                                            if "negated_accuracy" in metrics else ""))
floors = {name: nn.smoothed_target_entropy(t.config.n_classes if t.kind == "classify" else t.config.vocab_size,
                                           t.label_smoothing) for name, (t, _, _, _) in shipped.items()}
viz.training_curves({name: h for name, (_, _, h, _) in shipped.items()}, floors);

# %% [markdown]
# Each loss settles on its dashed floor H(q): with label smoothing no model can go lower, so a curve that reaches
# it has fitted the smoothed targets as well as any model could — the remaining loss is the ε spread on
# purpose, not an error. The validation accuracy (right) is measured on examples never trained on.

# %%
task, params_, _, _ = shipped["dates"]
examples = ["the 3rd of March, 2021", "3 Mar 21", "March 3rd 2021", "Wednesday, 3 March 2021", "7/11/1969",
            "Dec 25, 1999", "2049.12.31"]
for text, pred in zip(examples, predict(task, params_, examples)):
    print(f"{text!r:28} -> {pred}")

# %% [markdown]
# ## Does "2021" attend to the year?
#
# Cross-attention of the trained dates model, last decoder layer, averaged over heads. The decoder's input is
# `<s>` followed by the output shifted right, so the query at row t reads the characters *before* output t and
# **predicts output t**: the rows are labelled by the character each one predicts (→ 2, → 0, …, → `</s>`),
# the columns by the input characters it looks at.

# %%
model = tn.Transformer.from_config(task.config, params_)
text = "the 3rd of March, 2021"
src = np.array([task.tokenizer.encode(text)])
out = predict(task, params_, [text])[0]
tgt = np.array([task.tokenizer.encode(out, bos=True)])
_, attention = model.forward_with_attention(src, tgt)
cross = attention["decoder_cross"][-1][0].mean(axis=0)     # (T, S)
viz.attention_weights(cross, [f"→{c}" for c in out] + ["→</s>"], list(text),
                      title=f"Cross-attention of the trained dates model: {text!r} -> {out}");

# %%
year_cols = [i for i, ch in enumerate(text) if i >= text.index("2021")]
year_rows = list(range(4))                                  # the queries that predict the output's "2021"
share = cross[np.ix_(year_rows, year_cols)].sum(axis=1).mean() / cross[year_rows].sum(axis=1).mean()
print(f"the queries that predict the year put {share:.0%} of their attention on the input '2021'")

# %% [markdown]
# The mean over heads hides what each head does. Explore the heads one by one (chapter 5 steps through this
# model's generation):

# %%
viz.explore("dates", text)

# %% [markdown]
# *A page that runs no script — a repository's view of this notebook — leaves the explorer above empty.
# Here is a picture of its head view (the dates model's cross-attention);
# [the example pages](../docs/explore/dates.html) open in any browser.*
#
# ![the attention explorer](../docs/explore_head_view.png)

# %% [markdown]
# ## The classifier and negation
#
# The sentiment classifier pools its encoder's outputs; its self-attention lets "not" change what "bad" means.

# %%
task_s, params_s, _, metrics_s = shipped["sentiment"]
sentences = ["the plot was bad", "the plot was not bad", "the plot was not bad at all",
             "the acting was the best", "the acting was hardly the best",
             "the food was dull but the service was charming", "the food was charming but the service was not charming"]
labels = predict(task_s, params_s, sentences)
for s, y in zip(sentences, labels):
    print(f"{task_s.labels[y]:8s} {s}")

# %%
from transformer_np.model import classifier_logits

ids = np.array([task_s.tokenizer.encode("the plot was not bad at all")])
_, weights = classifier_logits(params_s, ids, task_s.config, need_weights=True)
words = "the plot was not bad at all".split()
viz.head_grid(weights[-1][0], words, words, title="Last encoder layer of the sentiment classifier");

# %% [markdown]
# Its mistakes on the held-out sentences:

# %%
test = task_s.test
preds = predict(task_s, params_s, [x for x, _ in test])
wrong = [(x, y) for (x, y), p in zip(test, preds) if p != y]
print(f"{len(wrong)} wrong out of {len(test)}")
for x, y in wrong[:10]:
    print(f"  said {task_s.labels[1 - y]}, truth {task_s.labels[y]}: {x}")

# %% [markdown]
# ## A language model, trained live
#
# Everything above was trained beforehand. This one trains now, in this cell, for 300 steps (about twenty seconds
# on two cores): a decoder-only Transformer (C = 64, 2 pre-LN layers, GELU) learning to predict the next
# **character** of the text that ships with this package — its own docstrings, over a quarter of a million
# characters about Transformers (the count is printed below). Each step takes 16 random windows of 64 characters;
# the loss is the cross-entropy of every next character, its gradient the backward passes of this chapter, the
# update Adam with the paper's schedule. The last 10% of the text is **held out**: every 50 steps the model is
# scored on 32 fixed windows of it, text it never trains on — the validation curve.

# %%
import hashlib  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from transformer_np import decoding  # noqa: E402
from transformer_np.training import loop  # noqa: E402
from transformer_np.training.tasks import docstring_corpus  # noqa: E402

corpus = docstring_corpus()
t0 = time.perf_counter()
lm, char_tok, lm_history = loop.train_char_lm(corpus, steps=300)
lm_losses = lm_history["loss"]
print(f"{len(corpus):,} characters, {len(char_tok)} symbols; 300 steps in {time.perf_counter() - t0:.0f} s; "
      f"training loss {np.mean(lm_losses[:20]):.2f} -> {np.mean(lm_losses[-50:]):.2f} nats per character "
      f"(uniform guessing: {np.log(len(char_tok)):.2f}); held-out {lm_history['val'][-1][1]:.2f}")
assert lm_history["val"][-1][1] < 0.6 * np.log(len(char_tok))

# %% [markdown]
# Longer runs, and the **ablation**: the same model trained for 1,500 steps with the sin-cos positions and without
# them (`python scripts/char_lm_runs.py`, committed in `docs/char_lm_runs.json`). The run above repeats the first
# 300 steps of the first one — same model, seed and schedule, digit for digit (to float32 rounding) when the corpus
# is the same. But the corpus is the package's docstrings, which change as the package does; the windows then hold
# other characters and the run differs from its first steps. So the cell checks that its held-out losses agree with
# the committed ones within 0.1 nats (the ablation's curve is 0.28 nats away by step 300) and says which corpus the
# committed runs saw:

# %%
root = Path.cwd() if (Path.cwd() / "docs").exists() else Path.cwd().parent
char_runs = json.loads((root / "docs/char_lm_runs.json").read_text())["runs"]
committed = dict(char_runs["sin-cos positions"]["val"])
gap = max(abs(v - committed[s]) for s, v in lm_history["val"])
print(f"this run against the committed one at steps {[s for s, _ in lm_history['val']]}: largest difference "
      f"{gap:.1e} nats")
assert gap < 0.1
print("the committed runs' corpus is", "this one" if json.loads((root / "docs/char_lm_runs.json").read_text())[
    "corpus_sha256"] == hashlib.sha256(corpus.encode()).hexdigest() else "an earlier version of these docstrings")
for name, run in char_runs.items():
    (s, v), best = run["val"][-1], min(v for _, v in run["val"])
    print(f"{name:18s} held-out loss after {s:,} steps {v:.3f} (best {best:.3f}); training, last 100 steps "
          f"{np.mean(run['loss'][-100:]):.3f}")
viz.lm_runs(char_runs, live=lm_history);

# %% [markdown]
# Without positions the model is worse by about two thirds of a nat per character on held-out text (2.40 against
# 1.73 after 1,500 steps) and its curve flattens early: without positions, attention sees the earlier characters as a
# weighted *set* — from "th" it knows the current "h" and that a "t" came somewhere before, not that it came right
# before (only the causal mask leaks a faint position signal: a query sees how many keys it has). It still learns
# which characters are frequent and what tends to follow the current one. The held-out loss stays close to the
# training loss in both runs (1.73 against 1.65 with positions, 2.40 against 2.29 without): at 1,500 steps of
# 16 × 64 characters the model has seen each training character about six times and is not yet over-fitting.

# %% [markdown]
# Sampled from the 300-step model with temperature 0.7, continuing a prompt — after 300 steps it has learnt
# spaces, frequent short words and the look of English letters, not yet most words:

# %%
for prompt in ("The attention ", "Returns "):
    session = decoding.LMSession(lm, [char_tok.encode(prompt)])
    new = decoding.sample(session, 48, rng=np.random.default_rng(1), temperature=0.7)[0]
    print(repr(prompt + char_tok.decode(new)))

# %% [markdown]
# ## Exercises
#
# **1.** Write `my_softmax_backward(dy, y)`: the gradient with respect to x of softmax(x) = y, given the
# upstream gradient dy (rows on the last axis).

# %%
from transformer_np.teaching import exercises

my_softmax_backward = None  # replace with your function

# %%
exercises.check_softmax_backward(my_softmax_backward)

# %% [markdown]
# **2.** Write `my_lr(step, d_model, warmup)`, the paper's learning-rate schedule.

# %%
my_lr = None  # replace with your function

# %%
exercises.check_schedule(my_lr)

# %% [markdown]
# **3.** One training step's gradient. The output layer turns N vectors x (N, C) into logits z = x W + b;
# the loss is the label-smoothed mean cross-entropy with targets y and smoothing ε. Write
# `my_output_grads(W, b, x, y, eps)` returning `(dW, db)`. (Start from dL/dz; the checker uses several shapes
# and values of ε.)

# %%
my_output_grads = None  # replace with your function

# %%
exercises.check_training_gradient(my_output_grads)

# %% [markdown]
# **4.** An ablation: what breaks without the $1/\sqrt{d_k}$, and without the positional encoding? Write
# `my_ablations(task, params, examples)` returning a dict with the exact-match accuracy of the shipped reverse
# model on `examples` as it is (`"full"`), with every attention's scaling removed (`"no_scaling"`; hint:
# multiplying $W^Q$ and $b^Q$ by $\sqrt{D}$ does it exactly — why?) and with no positional encoding
# (`"no_positions"`; `dataclasses.replace(task.config, positional_encoding=False)`). Predict the three numbers
# before you measure them. (The model was trained *with* both: this measures what it relies on, not how well
# a model trained without them would do.)

# %%
my_ablations = None  # replace with your function

# %%
exercises.check_ablations(my_ablations)

# %% [markdown]
# ## References
#
# - Vaswani et al. 2017 (arXiv:1706.03762): §5.3 Adam and the schedule (eq. 3), §5.4 label smoothing ε = 0.1.
# - Kingma & Ba 2015, *Adam* (arXiv:1412.6980).
# - Szegedy et al. 2016, *Rethinking the Inception Architecture* (arXiv:1512.00567): label smoothing; Müller,
#   Kornblith & Hinton 2019, *When Does Label Smoothing Help?* (arXiv:1906.02629).
# - Kazemnejad et al. 2023, *The Impact of Positional Encoding on Length Generalization* (arXiv:2305.19466): models
#   trained with no positional encoding, unlike the ablation of exercise 4.
# - Andrej Karpathy's *micrograd*, *nanoGPT* and *llm.c* (github.com/karpathy): backward passes written by hand
#   beside their forwards, as here.
