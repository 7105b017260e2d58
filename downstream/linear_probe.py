"""Linear probes on frozen pre-projection image features at 1/10/100% of the training labels.

One scikit-learn logistic regression per finding (standardised features), fitted on a
seeded subset of the train split; AUROC per finding and the mean on every eval split,
averaged over `config.draws` subsets below 100% (with the spread of the means).
`config.finetune.enabled` instead trains a copy of the whole image tower with a linear head.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from downstream import metrics, training
from downstream.data import (BenchData, finding_names, label_draws, mean_over_draws,
                            warn_one_class)
from downstream.encoders import Encoders


class LinearProbe:
    """Per-finding logistic regressions, scikit-learn style: `fit(X, Y)` then `predict_scores(X)`.

    A finding with one class only in the training labels gets that constant as its score
    (the best a classifier can learn from such labels; its AUROC is 0.5).
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000):
        self.C, self.max_iter = C, max_iter

    def fit(self, features: np.ndarray, targets: np.ndarray) -> LinearProbe:
        """Fits one standardised logistic regression per column of `targets` [n, F] (0/1 or
        bool); returns self."""
        targets = check_targets(targets, len(features))
        self.models_ = []
        for column in targets.T:
            if np.unique(column).size < 2:
                self.models_.append(float(column[0]))
                continue
            model = make_pipeline(StandardScaler(),
                                  LogisticRegression(C=self.C, max_iter=self.max_iter))
            self.models_.append(model.fit(features, column))
        return self

    def predict_scores(self, features: np.ndarray) -> np.ndarray:
        """[n, F] positive-class (target 1) probabilities."""
        return np.stack([np.full(len(features), m) if isinstance(m, float)
                         else m.predict_proba(features)[:, list(m.classes_).index(1)]
                         for m in self.models_], axis=1)


def check_targets(targets: np.ndarray, n: int) -> np.ndarray:
    """`targets` as an array [n, F] of 0/1; raises otherwise. Record labels (1/0/-1/-2) would
    make the second sorted class "positive", silently inverting the probe's AUROC."""
    targets = np.asarray(targets)
    if targets.ndim != 2 or len(targets) != n:
        raise ValueError(f"probe targets must be [n, F] = [{n}, findings], got shape "
                         f"{targets.shape} (one finding: pass y[:, None])")
    bad = np.setdiff1d(np.unique(targets), (0, 1))
    if bad.size:
        raise ValueError(f"probe targets must be 0/1 (or bool), got values {bad.tolist()[:5]}; "
                         "binarize record labels with Split.targets(names, uncertain_as)")
    return targets


class FineTunedClassifier(nnx.Module):
    """The image tower (a copy, trained) with a linear head: one logit per finding."""

    def __init__(self, encoders: Encoders, num_outputs: int, *, rngs: nnx.Rngs):
        self.tower = nnx.clone(encoders.model.image)
        self.head = nnx.Linear(encoders.model.image_proj.in_features, num_outputs, rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.head(self.tower(images)[0].astype(jnp.float32))


def finetune_classifier(encoders: Encoders, images: np.ndarray, targets: np.ndarray,
                        config: ml_collections.ConfigDict, *, seed: int
                        ) -> Callable[[np.ndarray], np.ndarray]:
    """Fine-tunes tower + head with binary cross-entropy; returns images -> [n, F] probabilities."""
    model = FineTunedClassifier(encoders, targets.shape[1], rngs=nnx.Rngs(seed))

    def loss_fn(m: FineTunedClassifier, batch: dict) -> jax.Array:
        return optax.sigmoid_binary_cross_entropy(m(batch["image"]), batch["y"]).mean()

    training.fit(model, loss_fn, {"image": images, "y": targets.astype(np.float32)},
                 steps=config.steps, batch_size=config.batch_size,
                 learning_rate=config.learning_rate, seed=seed, desc="fine-tune classifier")
    return training.predictor(model, lambda m, im: jax.nn.sigmoid(m(im)), encoders.batch_size)


def run(encoders: Encoders, data: BenchData, config: ml_collections.ConfigDict) -> dict[str, float]:
    """Probe AUROCs per label fraction and eval split, keys `<split>/<pct>%/auroc/...`, and
    how many findings had one class only in the training labels (`.../n_findings_one_class_in_train`,
    mean over draws): the probe scores them with a constant, AUROC 0.5, counted in the means."""
    data.require("linear_probe", ("image", "labels"), (data.train_split, *data.eval_splits))
    names = finding_names(config.findings)
    train = data.split(data.train_split)
    y_train = train.targets(names, config.uncertain_as)
    evals = {s: data.split(s) for s in data.eval_splits}
    if config.finetune.enabled:
        def scores_for(rows: np.ndarray, seed: int) -> dict[str, np.ndarray]:
            predict = finetune_classifier(encoders, train.images[rows], y_train[rows],
                                          config.finetune, seed=seed)
            return {s: predict(split.images) for s, split in evals.items()}
    else:
        x_train = encoders.image_features(train.images)
        x_evals = {s: encoders.image_features(split.images) for s, split in evals.items()}

        def scores_for(rows: np.ndarray, seed: int) -> dict[str, np.ndarray]:
            del seed  # the logistic regressions are deterministic
            probe = LinearProbe(config.C, config.max_iter).fit(x_train[rows], y_train[rows])
            return {s: probe.predict_scores(x) for s, x in x_evals.items()}
    truth = {s: split.targets(names, config.uncertain_as) for s, split in evals.items()}
    for s, y in truth.items():
        warn_one_class("linear_probe", data.name, s, y, names)
    out = {}
    for fraction in config.fractions:
        draws, per_draw = label_draws(len(train), fraction, config.draws, config.seed), []
        for seed, rows in draws:
            scores, result = scores_for(rows, seed), {}
            one_class = float(np.sum([np.unique(c).size < 2 for c in y_train[rows].T]))
            for s in evals:
                prefix = f"{s}/{fraction * 100:g}%"
                aurocs = metrics.finding_aurocs(truth[s], scores[s], names)
                result.update({f"{prefix}/{k}": float(v)
                               for k, v in zip(metrics.finding_auroc_keys(names), aurocs)})
                result.update({f"{prefix}/n_train": float(len(rows)),
                               f"{prefix}/n_findings_one_class_in_train": one_class,
                               f"{prefix}/draws": float(len(draws))})
            per_draw.append(result)
        out.update(mean_over_draws(per_draw))
    return out
