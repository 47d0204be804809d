"""Batched multi-label logistic regression: every finding x every C of a linear probe in one solve.

Why this exists: a multi-label probe (ChestX-ray14's 14 findings, CheXpert's) needs one
L2 logistic regression per finding, per C, per inner fold. scikit-learn fits them one
at a time, each fit making its own passes over a 100k x 2048 feature matrix. The
problems share that matrix, so here they are solved together: every pass over the
features is one matmul for all F x len(C) of them, and the cost is set by the number of
passes, not by the number of problems.

The objective of problem (f, C) is exactly scikit-learn's
``LogisticRegression(C=C, class_weight=..., penalty="l2", fit_intercept=True)`` on the
rows where finding f is labelled::

    C * sum_i w_i * logloss(y_i, x_i . beta + b) + ||beta||^2 / 2      (b not penalised)

with ``w_i = n_f / (2 * n_{f,class(i)})`` ("balanced", counted among f's labelled rows)
or 1 (``class_weight=None``); unlabelled (NaN) rows weigh 0. It is strictly convex, so
both solvers reach the same point; the tests check that they do.

The solver is a truncated Newton method (Newton-CG), because Newton's method converges
quadratically: once near the optimum, each step multiplies the gradient by a small
factor, so a tight tolerance (scikit-learn's ``tol=1e-10``) costs a few more steps, not
hundreds. Each Newton step solves H s = -g by conjugate gradients, batched over the
problems; one CG step is a Hessian-vector product, i.e. one pass (X v, then X^T (D X v)).
What keeps the CG short is the preconditioner. The Hessian of problem (f, C) is
``C [X 1]^T D [X 1] + diag(I, 0)`` with ``D = w sigma (1 - sigma)`` per row; replacing
sigma (1 - sigma) by its weighted mean ``a`` leaves ``a C [X 1]^T W_f [X 1] + diag(I, 0)``,
where W_f holds only f's class weights. Its big block, the class-weighted Gram matrix
G_f = X^T W_f X, does not depend on C or on the iterate, so it is eigendecomposed once
(G_f = V_f diag(lam_f) V_f^T) and every (C, Newton step) solve is two d x d matmuls,
``V_f diag(1 / (a C lam_f + 1)) V_f^T``, with the intercept eliminated by its Schur
complement. This removes exactly what makes the problems hard for plain CG or L-BFGS:
the correlation of CNN features, and the class weights (a 1 % finding's positives weigh
99 times its negatives); CG only has to handle the spread of sigma (1 - sigma). The rare
findings at large C, whose positives the fit nearly separates, stay the slowest.

Precision: the gradient, the step along the Newton direction and the line search are
float64 (the answer is the point where the float64 gradient vanishes), while the CG
Hessian-vector products run in float32, about twice as fast: they only shape the search
direction, and an inexact direction costs a little convergence speed, never accuracy.
The step length comes from an exact line search (1-D Newton on the directional
derivative, which is cheap once X s is known), which, unlike an Armijo test on loss
values, still works when loss differences fall below float64 resolution near the optimum.

Problems that have converged leave the batch, so late iterations touch only the
stragglers. Everything runs in torch on the CPU threads torch is set to use
(``torch.get_num_threads()``); nothing global is changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from cxrssl.errors import CxrsslError

CLASS_WEIGHTS = ("balanced", None)


class LogisticFitError(CxrsslError):
    """A problem that logistic regression cannot be fitted to (e.g. one class only)."""


@dataclass
class LogisticFit:
    """Coefficients of every (C, finding) problem, in the (standardised) space they were fitted in."""

    coef: np.ndarray  # (len(C), F, d) float64
    intercept: np.ndarray  # (len(C), F) float64
    c_grid: np.ndarray  # (len(C),)
    iterations: np.ndarray  # (len(C), F) Newton steps taken
    converged: np.ndarray  # (len(C), F) bool: scaled gradient <= tol
    cg_steps: int = 0  # CG steps taken, each one pass over the features for every problem still in the batch

    def decision(self, x) -> np.ndarray:
        """x . beta + b for every C and finding: (len(C), n, F)."""
        x = np.asarray(x, dtype=np.float64)
        return np.einsum("nd,cfd->cnf", x, self.coef, optimize=True) + self.intercept[:, None, :]

    def probability(self, x) -> np.ndarray:
        """P(positive) for every C and finding: (len(C), n, F)."""
        return 1.0 / (1.0 + np.exp(-self.decision(x)))


def sample_weights(targets: np.ndarray, class_weight: str | None = "balanced") -> np.ndarray:
    """Per-row, per-finding weights (n, F): scikit-learn's class weights among f's labelled rows, 0 where unlabelled.

    A finding whose labelled rows hold one class only (or none) is refused: its fit would
    be meaningless, and scikit-learn refuses it too.
    """
    if class_weight not in CLASS_WEIGHTS:
        raise LogisticFitError(f"class_weight {class_weight!r}: use 'balanced' or None")
    targets = np.asarray(targets, dtype=np.float64)
    labelled = ~np.isnan(targets)
    if np.any(labelled & (targets != 0) & (targets != 1)):
        raise LogisticFitError("targets must be 1.0 (positive), 0.0 (negative) or NaN (not labelled)")
    positives = (targets == 1).sum(0)
    negatives = (targets == 0).sum(0)
    one_class = np.flatnonzero((positives == 0) | (negatives == 0))
    if len(one_class):
        counts = ", ".join(f"finding {f}: {positives[f]} positive / {negatives[f]} negative" for f in one_class)
        raise LogisticFitError(f"a finding needs both classes among its labelled rows to be fitted ({counts}); leave it out")
    if class_weight is None:
        return labelled.astype(np.float64)
    total = positives + negatives
    return np.where(targets == 1, total / (2.0 * positives), np.where(targets == 0, total / (2.0 * negatives), 0.0))


def fit_logistic(
    x,
    targets,
    c_grid: Sequence[float],
    *,
    class_weight: str | None = "balanced",
    tol: float = 1e-10,
    max_iter: int = 100,
    max_cg: int = 200,
    init: LogisticFit | None = None,
) -> LogisticFit:
    """Fit L2 logistic regression for every finding (column of ``targets``) and every C.

    x: (n, d) features, already standardised. targets: (n, F), 1.0 / 0.0 / NaN.
    tol: the stopping threshold on the largest absolute gradient entry of
    scikit-learn's scaled objective (mean weighted loss + ||beta||^2 / (2 C sum(w))), the
    quantity scikit-learn's lbfgs compares with its ``tol``. max_iter: Newton steps.
    init: a fit of the same shapes to start from (e.g. the same problems on a few more rows).
    """
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim == 1:
        targets = targets[:, None]
    c_values = np.asarray(c_grid, dtype=np.float64)
    if c_values.ndim != 1 or len(c_values) == 0 or np.any(c_values <= 0):
        raise LogisticFitError(f"c_grid must be a non-empty sequence of positive C values, got {c_grid!r}")
    weights = sample_weights(targets, class_weight)
    x64 = torch.as_tensor(x).to(torch.float64)
    if x64.ndim != 2 or x64.shape[0] != targets.shape[0]:
        raise LogisticFitError(f"x has shape {tuple(x64.shape)} but targets has {targets.shape[0]} rows")
    return _fit(x64, x64.to(torch.float32), targets, weights, c_values, tol=tol, max_iter=max_iter, max_cg=max_cg, init=init)


@dataclass
class Preconditioner:
    """Each finding's class-weighted Gram matrix of [X, 1], the shared part of every (finding, C) preconditioner.

    For finding f: G_f = X^T W_f X (eigendecomposed: basis, lam), m_f = X^T w_f and
    s_f = sum(w_f). Built once per feature matrix (``build_preconditioner``); in
    cross-validation once for all folds, from all the rows the folds use, scaled to each
    fold's weight sum. It decides how fast the solver gets to the optimum, never where:
    every fit is converged to ``tol`` on its own rows.
    """

    basis: torch.Tensor  # (F, d, d) float32 eigenvectors of G_f
    lam: torch.Tensor  # (F, d) float32 eigenvalues of G_f
    centroid: torch.Tensor  # (F, d) float32 m_f
    weight_sum: torch.Tensor  # (F,) float64 s_f


def build_preconditioner(x32: torch.Tensor, weights: np.ndarray) -> Preconditioner:
    """The class-weighted Gram matrices of ``x32`` (n, d) under ``weights`` (n, F), eigendecomposed.

    Cheap because the weights take two values per finding (plus 0 where unlabelled):
    G_f = w_major X^T X + sum over the minority-class and unlabelled rows of
    (w_i - w_major) x_i x_i^T, one Gram over all rows and one over a few rows per finding.
    The eigendecompositions are float32: a preconditioner needs no more.
    """
    w = torch.as_tensor(weights, dtype=torch.float32)
    gram = x32.T @ x32
    bases, lams = [], []
    for f in range(w.shape[1]):
        column = w[:, f]
        labelled = column > 0
        major = torch.mode(column[labelled]).values  # the weight of the larger class
        rows = torch.nonzero(column != major).squeeze(1)
        gram_f = major * gram
        if len(rows):
            sub = x32[rows]
            gram_f = gram_f + sub.T @ (sub * (column[rows] - major)[:, None])
        lam, basis = torch.linalg.eigh(gram_f)
        bases.append(basis)
        lams.append(lam.clamp_min(0.0))
    return Preconditioner(torch.stack(bases), torch.stack(lams), w.T @ x32, w.double().sum(0))


def _fit(x64, x32, targets, weights, c_values, *, tol, max_iter, max_cg, init, preconditioner=None) -> LogisticFit:
    n, d = x64.shape
    n_c, n_f = len(c_values), targets.shape[1]
    n_p = n_c * n_f  # problem p = c * F + f
    c_t = torch.as_tensor(c_values, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64)
    cw = (w[:, None, :] * c_t[None, :, None]).reshape(n, n_p)  # C * w_i, (n, P)
    y = torch.as_tensor(np.nan_to_num(targets, nan=0.0)).expand(n_c, n, n_f).permute(1, 0, 2).reshape(n, n_p)
    weight_sum = w.sum(0)
    scale = (c_t[:, None] * weight_sum[None, :]).reshape(n_p)  # C * sum(w): unscaled -> scikit-learn gradient units
    finding = torch.arange(n_p) % n_f
    if preconditioner is None:
        preconditioner = build_preconditioner(x32, weights)
    # Scaled to these rows' weight sums (exact when built from them).
    ratio = (weight_sum / preconditioner.weight_sum).float()

    coef = torch.zeros(n_p, d, dtype=torch.float64)
    intercept = torch.zeros(n_p, dtype=torch.float64)
    if init is not None:
        if init.coef.shape != (n_c, n_f, d):
            raise LogisticFitError(f"init has coefficients of shape {init.coef.shape}, expected {(n_c, n_f, d)}")
        coef = torch.as_tensor(init.coef, dtype=torch.float64).reshape(n_p, d).clone()
        intercept = torch.as_tensor(init.intercept, dtype=torch.float64).reshape(n_p).clone()
    iterations = torch.zeros(n_p, dtype=torch.int64)
    converged = torch.zeros(n_p, dtype=torch.bool)

    # The working set: problems still being solved, compacted as they converge. The
    # (n, P) arrays are updated in place where possible: at 100k rows each is ~70 MB.
    ids = torch.arange(n_p)
    B, b = coef.clone(), intercept.clone()
    Z = torch.addmm(b, x64, B.T)  # (n, P) decision values
    cg_total = 0
    for step in range(max_iter + 1):
        S = torch.sigmoid(Z)
        R = torch.sub(S, y).mul_(cw)
        gB = torch.addmm(B, R.T, x64)
        gb = R.sum(0)
        del R
        gmax = torch.maximum(gB.abs().amax(1), gb.abs()) / scale[ids]
        done = gmax <= tol
        if step == max_iter:
            done = torch.ones_like(done)
        if done.any():  # write back and drop converged problems
            coef[ids[done]], intercept[ids[done]] = B[done], b[done]
            converged[ids[done]] = gmax[done] <= tol
            keep = ~done
            ids, B, b, gB, gb, gmax = ids[keep], B[keep], b[keep], gB[keep], gb[keep], gmax[keep]
            Z, S, cw, y = Z[:, keep], S[:, keep], cw[:, keep], y[:, keep]
        if len(ids) == 0:
            break
        iterations[ids] += 1
        curvature = torch.addcmul(S, S, S, value=-1.0).mul_(cw)  # C w sigma (1 - sigma), (n, P_a)
        del S
        # Inexact Newton: solve H s = -g only as far as the gradient is from zero (forcing
        # term eta = sqrt of the relative gradient), no tighter than float32 allows nor
        # than the step to tol needs.
        forcing = torch.maximum(torch.clamp(torch.sqrt(gmax), min=1e-4, max=0.5), 0.1 * tol / gmax)
        # The mean of sigma (1 - sigma) under the weights, times C and the preconditioner's scale.
        a = (curvature.sum(0) / scale[ids]).float() * ratio[finding[ids]] * c_t[ids // n_f].float()
        sB, sb, used = _newton_direction(x32, curvature.float(), gB.float(), gb.float(), preconditioner, finding[ids], a, forcing.float(), max_cg)
        del curvature
        cg_total += used
        sB, sb = sB.double(), sb.double()
        U = torch.addmm(sb, x64, sB.T)  # (n, P_a) change of the decision values per unit step
        t = _line_search(Z, U, cw, y, B, sB, gB, gb, sb)
        B = B + t[:, None] * sB
        b = b + t * sb
        Z.addcmul_(U, t)
        del U
    return LogisticFit(
        coef=coef.reshape(n_c, n_f, d).numpy(),
        intercept=intercept.reshape(n_c, n_f).numpy(),
        c_grid=c_values,
        iterations=iterations.reshape(n_c, n_f).numpy(),
        converged=converged.reshape(n_c, n_f).numpy(),
        cg_steps=cg_total,
    )


def _newton_direction(x32, curvature, gB, gb, pre: Preconditioner, finding, a, forcing, max_cg, chunk_rows: int = 4096):
    """Preconditioned CG on H s = -g for every problem at once (float32); problems leave as they reach their forcing term.

    H = [X^T D X + I, X^T D 1; 1^T D X, 1^T D 1] with D = diag(C w sigma (1 - sigma)) per problem.
    Preconditioner: a [G_f, m_f; m_f^T, s_f] + diag(I, 0), the Hessian with sigma (1 - sigma)
    replaced by its weighted mean; solved by block elimination of the intercept, with
    (a G_f + I)^-1 = V_f diag(1 / (a lam_f + 1)) V_f^T.
    The Hessian-vector products run over chunks of rows, so each chunk of X is read
    from memory once for both of its matmuls.
    """
    n = x32.shape[0]
    p_count, d = gB.shape
    inv_scale = 1.0 / (a[:, None] * pre.lam[finding] + 1.0)  # (P, d)

    def solve_a(r, live):  # (a G_f + I)^-1 r, grouped by finding (each has its own basis)
        out = torch.empty_like(r)
        for f in torch.unique(finding[live]).tolist():
            rows = torch.nonzero(finding[live] == f).squeeze(1)
            basis = pre.basis[f]
            out[rows] = ((r[rows] @ basis) * inv_scale[live[rows]]) @ basis.T
        return out

    everyone = torch.arange(p_count)
    cross = a[:, None] * pre.centroid[finding]  # a m_f: the preconditioner's beta-intercept block
    cross_solved = solve_a(cross, everyone)
    schur = (a * pre.weight_sum[finding].float() - (cross * cross_solved).sum(1)).clamp_min(1e-12 * a * pre.weight_sum[finding].float())

    def precondition(rB, rb, live):
        solved = solve_a(rB, live)
        zb = (rb - (cross[live] * solved).sum(1)) / schur[live]
        return solved - cross_solved[live] * zb[:, None], zb

    sB = torch.zeros_like(gB)
    sb = torch.zeros_like(gb)
    rB, rb = -gB, -gb
    live = everyone
    goal = forcing * torch.sqrt((gB * gB).sum(1) + gb * gb)
    zB, zb = precondition(rB, rb, live)
    pB, pb = zB, zb
    rz = (rB * zB).sum(1) + rb * zb
    D = curvature
    steps = 0
    for _ in range(max_cg):
        steps += 1
        qB = pB.clone()  # H p = X^T D (X p + p_b) + p, chunk by chunk
        qb = torch.zeros_like(pb)
        for start in range(0, n, chunk_rows):
            rows = x32[start : start + chunk_rows]
            h = torch.addmm(pb, rows, pB.T).mul_(D[start : start + chunk_rows])
            qB.addmm_(h.T, rows)
            qb += h.sum(0)
        alpha = rz / ((pB * qB).sum(1) + pb * qb)
        sB[live] += alpha[:, None] * pB
        sb[live] += alpha * pb
        rB = rB - alpha[:, None] * qB
        rb = rb - alpha * qb
        finished = torch.sqrt((rB * rB).sum(1) + rb * rb) <= goal[live]
        if finished.all():
            break
        if finished.any():
            keep = ~finished
            live, rB, rb, pB, pb, rz, D = live[keep], rB[keep], rb[keep], pB[keep], pb[keep], rz[keep], D[:, keep].contiguous()
        zB, zb = precondition(rB, rb, live)
        rz_new = (rB * zB).sum(1) + rb * zb
        beta = rz_new / rz
        rz = rz_new
        pB = zB + beta[:, None] * pB
        pb = zb + beta * pb
    return sB, sb, steps


def _line_search(Z, U, cw, y, B, sB, gB, gb, sb, max_steps: int = 20) -> torch.Tensor:
    """Step length t per problem minimising the objective along the direction: 1-D Newton on phi'(t), safeguarded by bisection.

    phi'(t) = sum_i C w_i (sigma(z_i + t u_i) - y_i) u_i + (beta + t s) . s; convex, so a
    bracket [lo, hi] with phi'(lo) < 0 < phi'(hi) always holds the minimiser. Stops when
    |phi'(t)| <= 1e-3 |phi'(0)|.
    """
    ss = (sB * sB).sum(1)
    bs = (B * sB).sum(1)
    slope0 = (gB * sB).sum(1) + gb * sb  # phi'(0) < 0 for a descent direction
    t = torch.ones_like(slope0)
    lo = torch.zeros_like(t)
    hi = torch.full_like(t, float("inf"))
    for _ in range(max_steps):
        S = torch.addcmul(Z, U, t).sigmoid_()
        slope = torch.sub(S, y).mul_(cw).mul_(U).sum(0) + bs + t * ss
        if bool((slope.abs() <= 1e-3 * slope0.abs()).all()):
            break
        curvature = torch.addcmul(S, S, S, value=-1.0).mul_(cw).mul_(U).mul_(U).sum(0) + ss
        del S
        lo = torch.where(slope < 0, t, lo)
        hi = torch.where(slope > 0, t, hi)
        newton = t - slope / curvature.clamp_min(1e-300)
        fallback = torch.where(torch.isinf(hi), 2.0 * t, 0.5 * (lo + hi))
        inside = (newton > lo) & (newton < hi)
        settled = slope.abs() <= 1e-3 * slope0.abs()
        t = torch.where(settled, t, torch.where(inside, newton, fallback))
    return t


# ---------------------------------------------------------------------------------------
# Exact AUC, column by column


def auc_per_column(truth, scores) -> np.ndarray:
    """ROC AUC of every column (Mann-Whitney U with ties counted one half, as roc_auc_score).

    truth, scores: (n, m) or (n,); truth 1.0 / 0.0 / NaN, NaN rows are skipped in that
    column. A column without both classes gets NaN. All columns are ranked in one sort.
    """
    truth = np.asarray(truth, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    one_column = truth.ndim == 1
    if one_column:
        truth, scores = truth[:, None], scores[:, None]
    if truth.shape != scores.shape or truth.ndim != 2:
        raise ValueError(f"truth {truth.shape} and scores {scores.shape} must have the same (n, m) shape")
    labelled = ~np.isnan(truth)
    if np.any(labelled & (truth != 0) & (truth != 1)):
        raise ValueError("truth must be 1.0, 0.0 or NaN")
    if np.any(labelled & ~np.isfinite(scores)):
        raise ValueError("a labelled row has a non-finite score")
    n, m = truth.shape
    if n == 0:
        return np.full(m, np.nan)[0] if one_column else np.full(m, np.nan)
    keyed = np.where(labelled, scores, np.inf)  # unlabelled rows sort last and weigh nothing
    order = np.argsort(keyed, axis=0, kind="stable")
    ranked = np.take_along_axis(keyed, order, 0).T  # (m, n), ascending per column
    pos = np.take_along_axis(labelled & (truth == 1), order, 0).T.astype(np.float64)
    neg = np.take_along_axis(labelled & (truth == 0), order, 0).T.astype(np.float64)
    starts = np.ones((m, n), dtype=bool)  # first row of every group of tied scores
    starts[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    group = np.cumsum(starts.ravel()) - 1  # tie groups numbered across all columns
    groups = group[-1] + 1
    pos_in = np.bincount(group, weights=pos.ravel(), minlength=groups)
    neg_in = np.bincount(group, weights=neg.ravel(), minlength=groups)
    column_of_group = np.repeat(np.arange(m), starts.sum(1))
    neg_before = np.cumsum(neg_in) - neg_in  # negatives in earlier groups, all columns
    first_group = np.searchsorted(column_of_group, np.arange(m))
    neg_below = neg_before - neg_before[first_group][column_of_group]  # ... of the same column
    u = np.bincount(column_of_group, weights=pos_in * (neg_below + 0.5 * neg_in), minlength=m)
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
    return auc[0] if one_column else auc


# ---------------------------------------------------------------------------------------
# Inner cross-validation over the whole grid


@dataclass
class CrossValidatedGrid:
    """Held-out AUC of every C and finding, averaged over the folds that could be scored."""

    auc: np.ndarray  # (len(C), F) mean held-out AUC; NaN where no fold could be scored
    folds_scored: np.ndarray  # (F,) folds that entered the mean
    fold_auc: np.ndarray  # (folds, len(C), F) per fold; NaN where skipped
    c_grid: np.ndarray
    folds: np.ndarray  # the fold labels, in the order of fold_auc
    scores: np.ndarray | None = field(default=None, repr=False)  # (len(C), n, F) out-of-fold decision values
    converged: bool = True  # every fit of every fold reached tol


def standardise(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``rows`` as float64, standardised in place with their own mean and population std, as StandardScaler does.

    Returns (standardised, mean, std); a feature StandardScaler deems constant (variance
    at rounding level) keeps std 1.
    """
    x64 = rows.to(torch.float64, copy=True)
    n = x64.shape[0]
    mean = x64.mean(0)
    x64.sub_(mean)
    var = torch.linalg.vector_norm(x64, dim=0) ** 2 / n
    eps = torch.finfo(torch.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    std = torch.where(constant, torch.ones_like(var), var.sqrt())
    return x64.div_(std), mean, std


def cross_validated_auc_grid(
    x,
    targets,
    fold_of_row,
    c_grid: Sequence[float],
    *,
    class_weight: str | None = "balanced",
    tol: float = 1e-10,
    max_iter: int = 100,
    return_scores: bool = False,
) -> CrossValidatedGrid:
    """Held-out AUC of every finding x C over the inner folds given by ``fold_of_row`` (-1: row not used).

    For each fold k: standardise with the mean/std of the rows not in k, fit every finding
    and C on those rows (each finding on its labelled rows), score fold k's rows. A finding
    is skipped in a fold where its labelled training or held-out rows lack a class.

    Every fold starts from zero: starting from the previous fold's solution saves no
    time (for a rare finding, a quarter of its positives changing moves the optimum about
    as far as zero is from it). Returned scores are decision values (x . beta + b).
    """
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim == 1:
        targets = targets[:, None]
    fold_of_row = np.asarray(fold_of_row)
    x_all = torch.as_tensor(x)
    n, n_f = targets.shape
    if x_all.ndim != 2 or x_all.shape[0] != n or fold_of_row.shape != (n,):
        raise LogisticFitError(f"x {tuple(x_all.shape)}, targets {targets.shape} and fold_of_row {fold_of_row.shape} must share their rows")
    c_values = np.asarray(c_grid, dtype=np.float64)
    folds = np.unique(fold_of_row[fold_of_row >= 0])
    if len(folds) < 2:
        raise LogisticFitError(f"cross-validation needs at least 2 folds, fold_of_row has {len(folds)}")
    fold_auc = np.full((len(folds), len(c_values), n_f), np.nan)
    scores = np.full((len(c_values), n, n_f), np.nan) if return_scores else None
    all_converged = True
    used_rows = np.flatnonzero(fold_of_row >= 0)
    fittable = [f for f in range(n_f) if _both_classes(targets[used_rows, f])]
    preconditioner = _shared_preconditioner(x_all[used_rows], targets[used_rows][:, fittable], class_weight) if fittable else None
    for k, fold in enumerate(folds):
        train_rows = np.flatnonzero((fold_of_row >= 0) & (fold_of_row != fold))
        held_rows = np.flatnonzero(fold_of_row == fold)
        usable = [f for f in range(n_f) if _both_classes(targets[train_rows, f]) and _both_classes(targets[held_rows, f])]
        if not usable:
            continue
        train64, mean, std = standardise(x_all[train_rows])
        weights = sample_weights(targets[train_rows][:, usable], class_weight)
        fit = _fit(
            train64,
            train64.to(torch.float32),
            targets[train_rows][:, usable],
            weights,
            c_values,
            tol=tol,
            max_iter=max_iter,
            max_cg=200,
            init=None,
            preconditioner=_select(preconditioner, [fittable.index(f) for f in usable]),
        )
        del train64
        all_converged &= bool(fit.converged.all())
        held = ((x_all[held_rows].to(torch.float64) - mean) / std).numpy()
        decision = fit.decision(held)  # (len(C), n_held, F_usable)
        truth = targets[held_rows][:, usable]
        n_c, n_held, n_u = decision.shape
        auc = auc_per_column(np.tile(truth, (1, n_c)), decision.transpose(1, 0, 2).reshape(n_held, n_c * n_u))
        fold_auc[k][:, usable] = auc.reshape(n_c, n_u)
        if scores is not None:
            scores[:, held_rows[:, None], np.asarray(usable)[None, :]] = decision
    scored = np.isfinite(fold_auc)
    folds_scored = scored[:, 0, :].sum(0)
    with np.errstate(invalid="ignore"):
        mean_auc = np.where(scored.any(0), np.nansum(fold_auc, 0) / np.maximum(scored.sum(0), 1), np.nan)
    return CrossValidatedGrid(mean_auc, folds_scored, fold_auc, c_values, folds, scores, all_converged)


def _shared_preconditioner(x_used: torch.Tensor, targets: np.ndarray, class_weight) -> Preconditioner:
    """One preconditioner for every fold: from all the rows the folds use, standardised together."""
    x32 = standardise(x_used)[0].to(torch.float32)
    return build_preconditioner(x32, sample_weights(targets, class_weight))


def _select(pre: Preconditioner, findings: list[int]) -> Preconditioner:
    index = torch.as_tensor(findings)
    return Preconditioner(pre.basis[index], pre.lam[index], pre.centroid[index], pre.weight_sum[index])


def _both_classes(column: np.ndarray) -> bool:
    return bool(np.any(column == 1) and np.any(column == 0))
