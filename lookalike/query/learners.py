"""Learners of a tuned space from labelled model vectors, and the retrieval scores that judge them.

Each learner maps (vectors N x dim, integer labels N) to a `Transform`. Which one `tune` uses was
decided by measurement on real pictures with labels the learner never saw (bench/tune_learners.py):
`lda` (a regularised linear discriminant) won; the others stay for that comparison.
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
    vals, vecs = np.linalg.eigh(scatter)
    return vecs[:, np.argsort(vals)[::-1][:p]].astype(np.float32)


def fit_lda(x: np.ndarray, y: np.ndarray, dims: int = 128, shrink: float = 0.1, pca: int = 512) -> Transform:
    """Regularised linear discriminant: directions that spread categories apart relative to the
    spread inside them. The within-class scatter is shrunk towards its mean variance (`shrink`),
    which keeps directions the training categories did not use alive for unseen ones; a PCA to
    `pca` axes first keeps the eigenproblem small (and drops noise)."""
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    basis = _principal_axes(x, mean, min(pca, len(x) - 1, x.shape[1]))  # dim x p
    z = ((x - mean) @ basis).astype(np.float64)
    classes, inv = np.unique(y, return_inverse=True)
    means = np.zeros((len(classes), z.shape[1]))
    np.add.at(means, inv, z)
    counts = np.bincount(inv).astype(np.float64)
    means /= counts[:, None]
    within = z - means[inv]
    sw = within.T @ within / len(z)
    sw = (1 - shrink) * sw + shrink * np.trace(sw) / len(sw) * np.eye(len(sw))
    sb = (means * counts[:, None]).T @ means / len(z)
    # Sb v = lambda Sw v, via Sw^-1/2 (symmetric): whiten the within-class scatter, then rotate.
    w_vals, w_vecs = np.linalg.eigh(sw)
    inv_sqrt = w_vecs / np.sqrt(np.maximum(w_vals, 1e-12))
    m = inv_sqrt.T @ sb @ inv_sqrt
    vals, vecs = np.linalg.eigh(m)
    order = np.argsort(vals)[::-1][:min(dims, len(classes) - 1, len(vals))]
    proj = basis @ (inv_sqrt @ vecs[:, order])
    return Transform(mean.astype(np.float32), proj.astype(np.float32))


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


LEARNERS = {"identity": fit_identity, "pca-whiten": fit_pca_whiten, "lda": fit_lda, "proxy-head": fit_proxy_head}
