"""The multi-label probe's model selection: cxrssl's batched solver against scikit-learn, side by side.

    python bench/multilabel_probe.py                              # 100,000 x 2,048, 14 findings (minutes)
    python bench/multilabel_probe.py --rows 20000 --dims 512      # a quick run
    python bench/multilabel_probe.py --rows 20000 --dims 512 --sklearn-tight   # + scikit-learn converged, the AUCs to match
    OMP_NUM_THREADS=2 python bench/multilabel_probe.py            # the threads both sides get

Synthetic float32 features with planted signal (non-negative and correlated, like pooled
CNN features), 14 findings of different prevalence (1-30 %) that co-occur through a
shared factor, a few % of the labels missing (NaN), patients of 1-3 films assigned to 5
folds. The whole grid (6 C x 5 folds x every finding) is timed with
``cxrssl.eval.logreg.cross_validated_auc_grid``. scikit-learn, the way the binary probe
(``cxrssl.eval.probe``) does it: StandardScaler fitted on the fold's training rows, then
``LogisticRegression(class_weight="balanced", max_iter=2000)`` per finding, warm-started
along the sorted C grid, would take hours on the whole grid, so it runs on a part
(``--sklearn-part FOLDS:FINDINGS``; the findings spread over the prevalences) and its
whole-grid time is extrapolated linearly: scaler fits x folds + the mean time of a
(fold, finding) x folds x findings. Printed: which figures are measured and which
extrapolated, and the largest held-out AUC difference between the two on the part both ran.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from cxrssl.hardware import cpu_description

C_VALUES = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0)
PREVALENCE = (0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10, 0.12, 0.15, 0.20, 0.25, 0.30)


def synthetic_task(rows: int, dims: int, findings: int, folds: int = 5, seed: int = 0, latent: int = 64, missing: float = 0.03):
    """Features (rows, dims) float32, targets (rows, findings) 1/0/NaN, fold of every row (by patient)."""
    rng = np.random.default_rng(seed)
    prevalence = np.resize(np.array(PREVALENCE), findings)
    hidden = rng.standard_normal((rows, latent), dtype=np.float32)  # what the film shows
    features = hidden @ (rng.standard_normal((latent, dims), dtype=np.float32) / np.float32(np.sqrt(latent)))
    features += rng.standard_normal((rows, dims), dtype=np.float32)
    np.maximum(features, 0, out=features)  # post-ReLU pooling: non-negative, correlated
    shared = rng.standard_normal(rows)[:, None]  # one factor raising every finding: co-occurrence
    risk = 1.5 * (hidden @ (rng.standard_normal((latent, findings)) / np.sqrt(latent))) + 0.8 * shared + rng.logistic(size=(rows, findings))
    threshold = np.array([np.quantile(risk[:, f], 1 - p) for f, p in enumerate(prevalence)])
    targets = (risk > threshold).astype(np.float64)
    targets[rng.random((rows, findings)) < missing] = np.nan
    patients = np.repeat(np.arange(rows), rng.integers(1, 4, size=rows))[:rows]
    fold_of_row = rng.integers(0, folds, size=patients[-1] + 1)[patients]
    return features, targets, fold_of_row


def sklearn_part(features, targets, fold_of_row, folds, findings, c_grid, tight: bool = False):
    """The binary probe's way, on some folds and findings: held-out AUCs and the seconds each piece took.

    tight: instead, float64 features and LogisticRegression(tol=1e-10, solver="newton-cholesky"),
    converged to the last digits (what cxrssl's solver reaches).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    auc, scaler_s, finding_s = {}, [], []
    if tight:
        features = features.astype(np.float64)
    for fold in folds:
        train = (fold_of_row >= 0) & (fold_of_row != fold)
        held = fold_of_row == fold
        started = time.perf_counter()
        scaler = StandardScaler().fit(features[train])
        train_x, held_x = scaler.transform(features[train]), scaler.transform(features[held])
        scaler_s.append(time.perf_counter() - started)
        for f in findings:
            started = time.perf_counter()
            rows = ~np.isnan(targets[train, f])
            held_rows = ~np.isnan(targets[held, f])
            model = LogisticRegression(class_weight="balanced", max_iter=2000, warm_start=True)
            if tight:
                model.set_params(tol=1e-10, max_iter=10000, solver="newton-cholesky")
            for c in sorted(c_grid):
                model.set_params(C=c).fit(train_x[rows], targets[train, f][rows])
                auc[fold, f, c] = roc_auc_score(targets[held, f][held_rows], model.decision_function(held_x[held_rows]))
            finding_s.append(time.perf_counter() - started)
    return auc, scaler_s, finding_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=2048)
    parser.add_argument("--findings", type=int, default=14)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--sklearn-part", default="1:3", help="FOLDS:FINDINGS that scikit-learn runs on (0:0 skips it)")
    parser.add_argument(
        "--sklearn-tight", action="store_true", help="also fit the part to tol 1e-10 (slow at full size): the AUCs cxrssl should match"
    )
    args = parser.parse_args()
    part_folds, part_findings = (int(v) for v in args.sklearn_part.split(":"))

    from cxrssl.eval.logreg import cross_validated_auc_grid

    print(cpu_description())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} (scikit-learn's BLAS)"
    )
    started = time.perf_counter()
    features, targets, fold_of_row = synthetic_task(args.rows, args.dims, args.findings, args.folds)
    print(
        f"data: {args.rows} x {args.dims} float32 features ({features.nbytes / 2**20:.0f} MiB), {args.findings} findings, "
        f"prevalence {np.nanmin(np.nanmean(targets, 0)):.3f}-{np.nanmax(np.nanmean(targets, 0)):.3f}, "
        f"{np.isnan(targets).mean() * 100:.1f} % labels missing, {args.folds} folds; made in {time.perf_counter() - started:.1f} s"
    )
    print(f"grid: C in {list(C_VALUES)} x {args.folds} folds x {args.findings} findings = {len(C_VALUES) * args.folds * args.findings} fits")

    started = time.perf_counter()
    grid = cross_validated_auc_grid(features, targets, fold_of_row, C_VALUES)
    ours_s = time.perf_counter() - started
    print(f"cxrssl cross_validated_auc_grid, whole grid:   {ours_s:8.1f} s  (measured; converged to tol 1e-10: {grid.converged})")
    print("  mean held-out AUC per finding at the best C: " + " ".join(f"{v:.3f}" for v in np.nanmax(grid.auc, 0)))

    if part_folds and part_findings:
        folds = np.unique(fold_of_row)[:part_folds]
        findings = np.unique(np.linspace(0, args.findings - 1, part_findings).round().astype(int))
        auc, scaler_s, finding_s = sklearn_part(features, targets, fold_of_row, folds, findings, C_VALUES)
        part_s = sum(scaler_s) + sum(finding_s)
        whole_s = np.mean(scaler_s) * args.folds + np.mean(finding_s) * args.folds * args.findings
        print(
            f"scikit-learn, {len(folds)} fold(s) x {len(findings)} finding(s) (prevalence "
            f"{', '.join(f'{np.nanmean(targets[:, f]):.3f}' for f in findings)}) x {len(C_VALUES)} C: {part_s:8.1f} s  (measured; "
            f"scaler {np.mean(scaler_s):.1f} s per fold, {np.mean(finding_s):.1f} s per finding's C path)"
        )
        print(f"scikit-learn, whole grid:                       {whole_s:8.1f} s  (extrapolated linearly from the part above)")
        print(f"speed-up on the whole grid: {whole_s / ours_s:.0f}x (measured cxrssl against extrapolated scikit-learn)")
        fold_index = {fold: k for k, fold in enumerate(grid.folds)}
        differences = [abs(auc[fold, f, c] - grid.fold_auc[fold_index[fold], list(C_VALUES).index(c), f]) for fold, f, c in auc]
        print(
            f"largest held-out AUC difference on the part both ran ({len(differences)} fold x finding x C): {max(differences):.2e} "
            f"(scikit-learn's default tol 1e-4 on float32 features stops short of the optimum cxrssl reaches)"
        )
        if args.sklearn_tight:
            started = time.perf_counter()
            tight, scaler_s, finding_s = sklearn_part(features, targets, fold_of_row, folds, findings, C_VALUES, tight=True)
            gap = max(abs(tight[key] - grid.fold_auc[fold_index[key[0]], list(C_VALUES).index(key[2]), key[1]]) for key in tight)
            whole_s = np.mean(scaler_s) * args.folds + np.mean(finding_s) * args.folds * args.findings
            print(
                f"scikit-learn converged (tol 1e-10, newton-cholesky, float64), same part: {time.perf_counter() - started:8.1f} s  (measured); "
                f"largest AUC difference to cxrssl {gap:.2e}"
            )
            print(
                f"scikit-learn converged, whole grid:             {whole_s:8.1f} s  (extrapolated); speed-up at equal accuracy {whole_s / ours_s:.0f}x"
            )


if __name__ == "__main__":
    main()
