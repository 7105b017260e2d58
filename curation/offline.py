"""Offline curation baselines: select a subset once, from a checkpoint's embeddings.

scikit-learn style: the constructor takes hyper-parameters, `fit(embeddings)` learns
and returns self (learned attributes end in `_`), `select(budget)` returns sorted row
positions. `embeddings` is an array [N, D] or a dict with 'image' and 'text' [N, D]
(pairs then use the joint embedding: both normalised, concatenated, normalised);
`budget` is a number of rows or a fraction in (0, 1).
"""

from __future__ import annotations

import inspect
import numbers
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from sklearn.cluster import KMeans

EmbeddingInput = np.ndarray | Mapping[str, np.ndarray]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def joint_matrix(embeddings: EmbeddingInput) -> np.ndarray:
    """Unit rows: the array itself, or the joint embedding of an image/text dict."""
    if isinstance(embeddings, Mapping):
        return _unit(np.concatenate([_unit(embeddings["image"]), _unit(embeddings["text"])], -1))
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be [N, D] or a dict of them, got shape {x.shape}")
    return _unit(x)


def resolve_budget(budget: int | float, n: int) -> int:
    """Rows to keep: an integer count (<= n) or a real fraction in (0, 1) (numpy scalars too)."""
    if isinstance(budget, numbers.Integral) and not isinstance(budget, (bool, np.bool_)):
        count = int(budget)
    elif isinstance(budget, numbers.Real) and 0.0 < budget < 1.0:
        count = int(round(budget * n))
    else:
        raise ValueError(f"budget must be an int count or a fraction in (0, 1), got {budget!r}")
    if not 0 <= count <= n:
        raise ValueError(f"budget {budget!r} -> {count} rows, but only {n} were fitted")
    return count


def _top(score: np.ndarray, count: int) -> np.ndarray:
    """Sorted positions of the `count` highest scores (ties by position)."""
    order = np.lexsort((np.arange(score.size), -score))
    return np.sort(order[:count])


def _kmeans(x: np.ndarray, n_clusters: int, seed: int) -> KMeans:
    from sklearn.cluster import KMeans  # here: the training config reads this module's defaults

    if n_clusters > x.shape[0]:
        raise ValueError(f"n_clusters={n_clusters} exceeds the {x.shape[0]} fitted rows")
    return KMeans(n_clusters=n_clusters, n_init=1, random_state=seed).fit(x)


def _centroid_distance(x: np.ndarray, model: KMeans) -> np.ndarray:
    """Cosine distance of every row to its own (normalised) centroid."""
    centers = _unit(model.cluster_centers_)
    return 1.0 - np.sum(x * centers[model.labels_], axis=-1)


class NotFittedError(ValueError, AttributeError):
    """`select` was called before `fit` (scikit-learn's NotFittedError, without the import)."""


def check_fitted(estimator: Any, attribute: str) -> None:
    """Raises NotFittedError unless `fit` has set `attribute` on the estimator."""
    if not hasattr(estimator, attribute):
        raise NotFittedError(f"this {type(estimator).__name__} is not fitted yet: call "
                             "fit(embeddings) before select(budget)")


class _Scored:
    """Selects the highest `score_` rows; subclasses set `score_` in fit."""

    score_: np.ndarray

    def select(self, budget: int | float) -> np.ndarray:
        """Sorted positions of the `budget` highest-scoring rows (a count or a fraction)."""
        check_fitted(self, "score_")
        return _top(self.score_, resolve_budget(budget, self.score_.size))


class RandomSubset(_Scored):
    """Uniform random subset: the control every curation claim is measured against."""

    needs_embeddings = False  # fit only counts the rows

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, embeddings: EmbeddingInput) -> "RandomSubset":
        """Draws a seeded random score per row (only the row count is read); returns self."""
        n = joint_matrix(embeddings).shape[0]
        self.score_ = np.random.default_rng(self.seed).random(n)
        return self


class ClipScoreTopK(_Scored):
    """DataComp CLIP-score filter: keep the pairs whose image and text agree most."""

    def fit(self, embeddings: Mapping[str, np.ndarray]) -> "ClipScoreTopK":
        """Scores each pair by the cosine similarity of its image and text; returns self."""
        if not isinstance(embeddings, Mapping):
            raise TypeError("ClipScoreTopK needs a dict with 'image' and 'text' embeddings")
        self.score_ = np.sum(_unit(embeddings["image"]) * _unit(embeddings["text"]), axis=-1)
        return self


class SSLPrototypes(_Scored):
    """Sorscher et al. 2022: difficulty = distance to the nearest k-means centroid;
    keep hard (far) examples when data is plentiful, easy (near) ones when scarce."""

    def __init__(self, n_clusters: int = 100, keep: str = "hard", seed: int = 0):
        if keep not in ("hard", "easy"):
            raise ValueError(f"keep must be 'hard' or 'easy', got {keep!r}")
        self.n_clusters, self.keep, self.seed = n_clusters, keep, seed

    def fit(self, embeddings: EmbeddingInput) -> "SSLPrototypes":
        """Clusters the pairs and scores them by distance to their centroid (`difficulty_`); returns self."""
        x = joint_matrix(embeddings)
        model = _kmeans(x, self.n_clusters, self.seed)
        self.labels_ = model.labels_
        self.difficulty_ = _centroid_distance(x, model)
        self.score_ = self.difficulty_ if self.keep == "hard" else -self.difficulty_
        return self


class SemDeDup(_Scored):
    """Abbas et al. 2023: within each k-means cluster, a pair whose cosine similarity to an
    earlier one (ordered farthest-from-centroid first) exceeds 1 - eps is a duplicate.

    `duplicate_` marks them at `eps`; `select(budget)` keeps the rows least similar to an
    earlier one, which is SemDeDup at the eps that meets the budget.
    """

    def __init__(self, eps: float = 0.05, n_clusters: int = 100, seed: int = 0):
        self.eps, self.n_clusters, self.seed = eps, n_clusters, seed

    def fit(self, embeddings: EmbeddingInput) -> "SemDeDup":
        """Clusters the pairs, marks near-duplicates at `eps` (`duplicate_`) and scores each
        row by how unlike the earlier rows of its cluster it is; returns self."""
        x = joint_matrix(embeddings)
        model = _kmeans(x, self.n_clusters, self.seed)
        distance = _centroid_distance(x, model)
        similarity = np.full(x.shape[0], -1.0)
        for cluster in range(self.n_clusters):
            members = np.flatnonzero(model.labels_ == cluster)
            members = members[np.lexsort((members, -distance[members]))]
            if len(members) > 1:
                sims = x[members] @ x[members].T
                earlier = np.triu(np.ones_like(sims, bool), k=1)
                similarity[members[1:]] = np.where(earlier, sims, -np.inf)[:, 1:].max(axis=0)
        self.labels_ = model.labels_
        self.max_similarity_ = similarity
        self.duplicate_ = similarity > 1.0 - self.eps
        self.score_ = -similarity
        return self


def balanced_quota(budget: int, sizes: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Splits `budget` over groups in proportion to `weights` (equal if None), never above a
    group's size; what a full group cannot take goes to the others (water-filling), and
    rounding is by largest remainder, so the quota sums exactly to min(budget, sizes.sum())."""
    sizes = np.asarray(sizes, np.int64)
    weights = np.ones(sizes.size) if weights is None else np.asarray(weights, np.float64)
    quota = np.zeros_like(sizes)
    remaining = min(budget, int(sizes.sum()))
    while remaining > 0:
        open_ = quota < sizes
        share = np.where(open_, weights, 0.0)
        share = remaining * share / share.sum()
        take = np.minimum(np.floor(share).astype(np.int64), sizes - quota)
        leftover = remaining - int(take.sum())
        frac = np.where(open_ & (quota + take < sizes), share - np.floor(share), -1.0)
        for g in np.argsort(-frac, kind="stable")[:leftover]:
            if frac[g] >= 0:
                take[g] += 1
        if take.sum() == 0:
            take[np.flatnonzero(open_)[0]] = 1
        quota += take
        remaining -= int(take.sum())
    return quota


class DensityPruning:
    """Abbas et al. 2024: per-cluster quota proportional to softmax(d_inter * d_intra / tau),
    keeping each cluster's far-from-centroid samples.

    d_intra: mean member distance to the centroid; d_inter: mean distance of the centroid
    to its `n_neighbors` nearest other centroids (cosine distances).
    """

    def __init__(self, n_clusters: int = 100, tau: float = 0.5, n_neighbors: int = 20, seed: int = 0):
        self.n_clusters, self.tau, self.n_neighbors, self.seed = n_clusters, tau, n_neighbors, seed

    def fit(self, embeddings: EmbeddingInput) -> "DensityPruning":
        """Clusters the pairs and weighs each cluster by softmax(d_inter * d_intra / tau); returns self."""
        x = joint_matrix(embeddings)
        model = _kmeans(x, self.n_clusters, self.seed)
        self.labels_ = model.labels_
        self.distance_ = _centroid_distance(x, model)
        k = self.n_clusters
        self.sizes_ = np.bincount(self.labels_, minlength=k)
        d_intra = np.bincount(self.labels_, self.distance_, minlength=k) / np.maximum(self.sizes_, 1)
        centers = _unit(model.cluster_centers_)
        between = 1.0 - centers @ centers.T
        np.fill_diagonal(between, np.inf)
        near = np.sort(between, axis=1)[:, :max(1, min(self.n_neighbors, k - 1))]
        d_inter = np.where(np.isfinite(near), near, 0.0).mean(axis=1)
        complexity = d_inter * d_intra / self.tau
        self.weights_ = np.exp(complexity - complexity.max())
        self.weights_ /= self.weights_.sum()
        return self

    def select(self, budget: int | float) -> np.ndarray:
        """Sorted positions of `budget` rows (a count, or a fraction in (0, 1)): each
        cluster's quota of its members farthest from the centroid."""
        check_fitted(self, "labels_")
        count = resolve_budget(budget, self.labels_.size)
        quota = balanced_quota(count, self.sizes_, self.weights_)
        chosen = [_members_by(self.labels_, c, -self.distance_)[:q] for c, q in enumerate(quota)]
        return np.sort(np.concatenate(chosen)).astype(np.int64)


def _members_by(labels: np.ndarray, cluster: int, key: np.ndarray) -> np.ndarray:
    """Members of a cluster in ascending `key` (ties by position)."""
    members = np.flatnonzero(labels == cluster)
    return members[np.lexsort((members, key[members]))]


class HierarchicalKMeansSampling:
    """Vo et al. 2024: k-means on the data, then k-means on the centroids, level by level;
    the budget is split equally down the tree (capped by what each node holds), and the
    leaves are sampled uniformly at random."""

    def __init__(self, n_clusters: Sequence[int] = (100, 10), seed: int = 0):
        if list(n_clusters) != sorted(n_clusters, reverse=True):
            raise ValueError(f"n_clusters must shrink level by level, got {n_clusters}")
        self.n_clusters, self.seed = tuple(n_clusters), seed

    def fit(self, embeddings: EmbeddingInput) -> "HierarchicalKMeansSampling":
        """Builds the k-means hierarchy, one level per entry of `n_clusters`; returns self."""
        points = joint_matrix(embeddings)
        self.levels_ = []  # level l: the parent (in level l+1) of each level-l node
        for level, k in enumerate(self.n_clusters):
            model = _kmeans(points, k, self.seed + level)
            self.levels_.append(model.labels_)
            points = _unit(model.cluster_centers_)
        return self

    def select(self, budget: int | float) -> np.ndarray:
        """Sorted positions of `budget` rows (a count, or a fraction in (0, 1)), split equally
        down the tree and drawn uniformly within each leaf."""
        check_fitted(self, "levels_")
        leaf_of_row = self.levels_[0]
        count = resolve_budget(budget, leaf_of_row.size)
        rng = np.random.default_rng(self.seed)
        # node_of_row[l]: the level-l node above each row; a node is named by its path.
        node_of_row = [leaf_of_row]
        for parents in self.levels_[1:]:
            node_of_row.append(parents[node_of_row[-1]])
        quota = {(): count}
        for depth in range(len(self.levels_) - 1, -1, -1):
            quota = self._split(quota, node_of_row, depth)
        chosen = [rng.permutation(np.flatnonzero(self._rows(key, node_of_row)))[:q]
                  for key, q in sorted(quota.items())]
        return np.sort(np.concatenate(chosen)).astype(np.int64)

    @staticmethod
    def _rows(key: tuple[int, ...], node_of_row: list[np.ndarray]) -> np.ndarray:
        """Mask of the rows under the node named by its path from the root."""
        mask = np.ones(node_of_row[0].size, bool)
        for depth, node in zip(range(len(node_of_row) - 1, -1, -1), key):
            mask &= node_of_row[depth] == node
        return mask

    def _split(self, quota: dict, node_of_row: list[np.ndarray], depth: int) -> dict:
        """Splits each parent's quota equally over its children at `depth`."""
        out = {}
        for key, q in quota.items():
            rows = self._rows(key, node_of_row)
            children, sizes = np.unique(node_of_row[depth][rows], return_counts=True)
            for child, share in zip(children, balanced_quota(q, sizes)):
                out[key + (int(child),)] = int(share)
        return out


BASELINES: dict[str, type] = {
    "random": RandomSubset,
    "semdedup": SemDeDup,
    "ssl_prototypes": SSLPrototypes,
    "density": DensityPruning,
    "hierarchical_kmeans": HierarchicalKMeansSampling,
    "clip_score": ClipScoreTopK,
}


def baseline_args(name: str) -> dict[str, Any]:
    """The hyper-parameters of the baseline `name` with their defaults, `seed` left out (the
    run's seed sets it): what `config.schedule.offline_args.<name>` holds."""
    params = inspect.signature(BASELINES[name]).parameters.values()
    return {p.name: p.default for p in params if p.name != "seed"}


def default_args() -> dict[str, dict[str, Any]]:
    """Every baseline's `baseline_args`, by name (config.schedule.offline_args)."""
    return {name: baseline_args(name) for name in BASELINES}


def make(name: str, seed: int | None = None, **hyperparameters: Any):
    """The baseline called `name` with the given hyper-parameters; an unknown one is an error
    naming the valid ones. `seed` goes only to the baselines that take one (not clip_score)."""
    if name not in BASELINES:
        raise ValueError(f"unknown offline baseline {name!r}; valid: {', '.join(BASELINES)}")
    cls = BASELINES[name]
    accepted = inspect.signature(cls).parameters
    unknown = sorted(set(hyperparameters) - set(accepted))
    if unknown:
        raise TypeError(f"offline baseline {name!r} has no hyper-parameter {', '.join(unknown)}; "
                        f"valid: {', '.join(accepted) or 'none'}")
    if seed is not None and "seed" in accepted:
        hyperparameters["seed"] = seed
    return cls(**hyperparameters)
