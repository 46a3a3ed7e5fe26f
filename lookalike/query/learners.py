"""Learners of a tuned space from labelled model vectors, and the retrieval scores that judge them.

Each learner maps (vectors N x dim, integer labels N) to a `Transform`. No single learner won on
every real set with labels it never saw (bench/tune_learners.py): a regularised linear
discriminant (`lda`) gained most where categories are fine-grained (one icon name drawn by
several themes: P@5 0.042 -> 0.098), and lost where they are broad (icon families such as
`folder-*`: 0.400 -> 0.348), where whitening the within-category scatter (`within-whiten`)
gained (0.400 -> 0.464). So `choose_learner` picks per collection, on categories held out of
the fit; the others stay for the comparison.
"""
from __future__ import annotations

import numpy as np

from ..store.transform import Transform


def retrieval_scores(vectors: np.ndarray, labels: np.ndarray, k_p: int = 5, k_map: int = 10) -> dict[str, float]:
    """P@k_p and mAP@k_map of search by id among `vectors` (each row queries the others; relevant =
    same label), with the definitions of query/evaluate.py. Rows must be L2-normalised."""
    x = np.asarray(vectors, dtype=np.float32)
    labels = np.asarray(labels)
    n_rel = np.bincount(np.unique(labels, return_inverse=True)[1])[np.unique(labels, return_inverse=True)[1]] - 1
    p, ap = [], []
    for lo in range(0, len(x), 1024):
        sims = x[lo:lo + 1024] @ x.T
        rows = np.arange(lo, min(lo + 1024, len(x)))
        sims[rows - lo, rows] = -np.inf
        top = np.argsort(-sims, axis=1)[:, :max(k_p, k_map)]
        hit = np.zeros((len(rows), max(k_p, k_map)), dtype=bool)  # fewer records than k: misses
        hit[:, :top.shape[1]] = labels[top] == labels[rows][:, None]
        hit[:, len(x) - 1:] = False  # the query itself (ranked last at -inf) is never a hit
        p.append(hit[:, :k_p].mean(axis=1))
        h = hit[:, :k_map]
        prec = np.cumsum(h, axis=1) / np.arange(1, k_map + 1)
        denom = np.minimum(n_rel[rows], k_map)
        ap.append(np.where(denom > 0, (prec * h).sum(axis=1) / np.maximum(denom, 1), 0.0))
    keep = n_rel > 0  # a query with nothing relevant scores nothing either way
    return {"p@5": float(np.concatenate(p)[keep].mean()), "map@10": float(np.concatenate(ap)[keep].mean())}


#: Scoring ranks every scored record against the others (quadratic): at most this many are scored,
#: whole categories drawn at random, so a tune of 100k records scores as fast as one of 8k.
MAX_SCORED = 8000


def scored_sample(labels: np.ndarray, limit: int = MAX_SCORED, seed: int = 11) -> np.ndarray:
    """Row mask of whole categories, drawn at random, holding at most `limit` rows (all rows when
    they fit; at least one category)."""
    labels = np.asarray(labels)
    if len(labels) <= limit:
        return np.ones(len(labels), dtype=bool)
    classes, counts = np.unique(labels, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(classes))
    keep = order[np.cumsum(counts[order]) <= limit]
    return np.isin(labels, classes[keep if len(keep) else order[:1]])


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fit_identity(x: np.ndarray, y: np.ndarray) -> Transform:
    """The untuned space (for comparisons): the identity."""
    return Transform(np.zeros(x.shape[1], np.float32), np.eye(x.shape[1], dtype=np.float32))


def fit_pca_whiten(x: np.ndarray, y: np.ndarray, dims: int = 128, shrink: float = 0.1) -> Transform:
    """Unsupervised: the top principal axes with their variances equalised (shrunk towards 1)."""
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    dims = min(dims, len(s) - 1)
    var = s[:dims] ** 2 / len(x)
    return Transform(mean.astype(np.float32), (vt[:dims].T / np.sqrt(var + shrink * var.mean())).astype(np.float32))


def _principal_axes(x: np.ndarray, mean: np.ndarray, p: int) -> np.ndarray:
    """The top `p` principal axes (dim x p) from the dim x dim scatter, accumulated in chunks: an
    eigenproblem of the width, whatever the row count (an SVD of 2000 x 1504 rows took 14 s on 2
    cores, this about 1 s, and 100k rows stay in bounded memory)."""
    scatter = np.zeros((x.shape[1], x.shape[1]), dtype=np.float64)
    for lo in range(0, len(x), 16384):
        part = x[lo:lo + 16384] - mean
        scatter += (part.T @ part).astype(np.float64)
    from scipy.linalg import eigh  # only the top p eigenpairs: faster than numpy's full eigh
    vals, vecs = eigh(scatter, subset_by_index=[len(scatter) - p, len(scatter) - 1], driver="evr")
    return vecs[:, np.argsort(vals)[::-1]].astype(np.float32)


def principal_basis(x: np.ndarray, pca: int | None = 512) -> tuple[np.ndarray, np.ndarray]:
    """(mean, dim x p basis of the top `p` principal axes, strongest first; `pca=None`: every axis
    the rows span): unsupervised, so one basis serves every learner fitted on the same rows (the
    width's eigenproblem is most of a fit's time), and `narrow` cuts it for those that want fewer."""
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    return mean, _principal_axes(x, mean, min(pca or x.shape[1], len(x) - 1, x.shape[1]))


def narrow(basis: tuple[np.ndarray, np.ndarray], p: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The top `p` axes of a `principal_basis` (its columns are ordered strongest first)."""
    return basis[0], basis[1][:, :p]


def _class_stats(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class means, class sizes, row-to-class index) of projected rows."""
    classes, inv = np.unique(y, return_inverse=True)
    means = np.zeros((len(classes), z.shape[1]))
    np.add.at(means, inv, z)
    counts = np.bincount(inv).astype(np.float64)
    return means / counts[:, None], counts, inv


def fit_lda(x: np.ndarray, y: np.ndarray, dims: int = 128, shrink: float = 0.1, pca: int = 512,
            basis: tuple[np.ndarray, np.ndarray] | None = None) -> Transform:
    """Regularised linear discriminant: directions that spread categories apart relative to the
    spread inside them. The within-class scatter is shrunk towards its mean variance (`shrink`),
    which keeps directions the training categories did not use alive for unseen ones; a PCA to
    `pca` axes first (or the given `principal_basis`) keeps the eigenproblem small (and drops noise)."""
    x = np.asarray(x, dtype=np.float32)
    mean, basis = basis if basis is not None else principal_basis(x, pca)  # basis: dim x p
    z = ((x - mean) @ basis).astype(np.float64)
    means, counts, inv = _class_stats(z, y)
    within = z - means[inv]
    sw = within.T @ within / len(z)
    sw = (1 - shrink) * sw + shrink * np.trace(sw) / len(sw) * np.eye(len(sw))
    sb = (means * counts[:, None]).T @ means / len(z)
    # Sb v = lambda Sw v, via Sw^-1/2 (symmetric): whiten the within-class scatter, then rotate.
    w_vals, w_vecs = np.linalg.eigh(sw)
    inv_sqrt = w_vecs / np.sqrt(np.maximum(w_vals, 1e-12))
    m = inv_sqrt.T @ sb @ inv_sqrt
    vals, vecs = np.linalg.eigh(m)
    order = np.argsort(vals)[::-1][:min(dims, len(means) - 1, len(vals))]
    proj = basis @ (inv_sqrt @ vecs[:, order])
    return Transform(mean.astype(np.float32), proj.astype(np.float32))


def fit_within_whiten(x: np.ndarray, y: np.ndarray, shrink: float = 0.03, pca: int = 512,
                      basis: tuple[np.ndarray, np.ndarray] | None = None) -> Transform:
    """Whiten the spread inside categories (shrunk towards its mean variance), keeping every axis:
    directions along which members of one category differ (drawing style, lighting, background)
    are damped, whatever the categories, so it carries over to categories the fit never saw
    better than a discriminant, which keeps only the directions that separated the seen ones."""
    x = np.asarray(x, dtype=np.float32)
    mean, basis = basis if basis is not None else principal_basis(x, pca)
    z = ((x - mean) @ basis).astype(np.float64)
    means, _, inv = _class_stats(z, y)
    within = z - means[inv]
    sw = within.T @ within / len(z)
    sw = (1 - shrink) * sw + shrink * np.trace(sw) / len(sw) * np.eye(len(sw))
    vals, vecs = np.linalg.eigh(sw)
    return Transform(mean, (basis @ (vecs / np.sqrt(np.maximum(vals, 1e-12)))).astype(np.float32))


def fit_proxy_head(x: np.ndarray, y: np.ndarray, dims: int = 128, epochs: int = 150, temperature: float = 0.05,
                   weight_decay: float = 1e-4, seed: int = 0) -> Transform:
    """A linear head trained in torch (CPU) with a normalised-softmax proxy loss: one learned
    proxy per category, each vector pulled towards its own and pushed from the others."""
    import torch
    torch.manual_seed(seed)
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    mean = xt.mean(0)
    classes, inv = np.unique(y, return_inverse=True)
    yt = torch.from_numpy(inv.astype(np.int64))
    dims = min(dims, xt.shape[1])
    _, _, v = torch.linalg.svd(xt - mean, full_matrices=False)  # start from the top principal axes
    w = torch.nn.Parameter(v[:dims].T.clone())
    proxies = torch.nn.Parameter(torch.randn(len(classes), dims) * 0.01)
    opt = torch.optim.Adam([w, proxies], lr=3e-3, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        z = torch.nn.functional.normalize((xt - mean) @ w, dim=1)
        p = torch.nn.functional.normalize(proxies, dim=1)
        loss = torch.nn.functional.cross_entropy(z @ p.T / temperature, yt)
        loss.backward()
        opt.step()
    return Transform(mean.numpy().astype(np.float32), w.detach().numpy().astype(np.float32))


LEARNERS = {"identity": fit_identity, "pca-whiten": fit_pca_whiten, "lda": fit_lda,
            "within-whiten": fit_within_whiten, "proxy-head": fit_proxy_head}

#: What `tune` chooses from (the proxy head matched lda at 70x its fit time, PCA whitening trailed).
#: `basis`: a `principal_basis` of every axis (pca=None), shared. The discriminants work in its
#: top 512 axes; within-category whitening keeps every axis, with less shrinkage: on icon
#: families (eval --holdout, 3 seeds) 512 axes and shrink 0.03 gave P@5 0.400 -> 0.464, every
#: axis and 0.01 0.514 (bench/README.md "Tune"); on icon names the discriminant stays ahead.
CHOICES = {"lda": lambda x, y, basis=None: fit_lda(x, y, dims=64, basis=_narrow(basis)),
           "lda-128": lambda x, y, basis=None: fit_lda(x, y, dims=128, basis=_narrow(basis)),
           "within-whiten": lambda x, y, basis=None: fit_within_whiten(
               x, y, shrink=0.01, basis=basis if basis is not None else principal_basis(x, None))}


def _narrow(basis: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray] | None:
    return narrow(basis) if basis is not None else None


def choose_learner(x: np.ndarray, y: np.ndarray, seed: int = 5,
                   basis: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[str, dict[str, dict[str, float]]]:
    """The name in `CHOICES` whose map, fitted on three quarters of the categories of (x, y), best
    ranks the last quarter (P@5, then mAP@10), and every candidate's scores there. Categories, not
    records, are split: the choice is for labels the fit has not seen, as tune's own check is.
    `basis`: `principal_basis(..., pca=None)`, shared by the candidates (it uses no labels)."""
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    val_classes = rng.permutation(classes)[:max(2, len(classes) // 4)]
    val = np.isin(y, val_classes)
    if val.sum() < 4 or len(np.unique(y[~val])) < 2:  # too few to choose on: the discriminant
        return "lda", {}
    basis = basis if basis is not None else principal_basis(x, None)
    scored = np.flatnonzero(val)[scored_sample(y[val])]
    scores = {}
    for name, fit in CHOICES.items():
        scores[name] = retrieval_scores(fit(x[~val], y[~val], basis=basis).apply(x[scored]), y[scored])
    best = max(scores, key=lambda n: (round(scores[n]["p@5"], 4), round(scores[n]["map@10"], 4)))
    return best, {n: {k: round(v, 4) for k, v in s.items()} for n, s in scores.items()}
