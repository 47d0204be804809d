"""Does pretraining pay? Backbones compared on identical folds and label budgets, paired.

For each labelled task, one resampling plan is drawn from the task alone (its labels,
patients, split and the seed), never from a backbone, and every backbone is probed on
exactly that plan, so every comparison is paired:

* **Outer design.** Without an official test split: stratified, patient-grouped K-fold
  cross-validation over every labelled image, repeated R times with different seeds
  (default 5 × 5: every image is tested 5 times). With one (the manifest's ``test``
  beside ``train``/``val``): the test part is kept for every repetition and the R
  repetitions redraw the training side (label budgets and inner folds). A patient in
  both official parts is refused, or purged from the training side (``split_policy``).
* **Label budgets.** In each training part, each class's patients are permuted once
  (``data.splits.label_budget_rows``) and a budget of b takes the first b patients per
  class with all their images; ``all`` takes every patient. Budgets are nested.
* **Multi-label tasks** (``eval.multilabel``: a manifest with findings): the folds are
  stratified over the findings at the patient level, a budget of b takes b patients in
  all (nested), and each fold fits the per-finding probe. Every finding gets its rows,
  and so does the macro mean AUC over the findings that every fold of that budget could
  fit and score; the others are named, never averaged in.
* **Inside.** The paper's probe, unchanged (``probe.fit_and_score``): standardise,
  balanced logistic regression, C from the grid by patient-grouped inner CV, refit, test.
  With ``settings.finetune``, every backbone is also fine-tuned end to end
  (``eval.finetune``) at the fine-tuning budgets on the folds of the first
  ``finetune_repeats`` repetitions: the same folds and draws for every backbone, so
  those rows are paired with the fine-tuned reference the same way.

Statistics (``eval.stats``): the corrected resampled t-test over the R·K folds for the
CV design, a patient-level paired bootstrap for a fixed test part. Each backbone gets
its mean ACC/AUC/SEN/SPE/F1 with a 95 % interval; each non-reference backbone its
paired difference to the reference (default: the random initialisation) with a 95 %
interval and a p-value. The output says which statistic was used.

A killed comparison resumes: finished folds are kept in ``.compare.partial.jsonl`` in
the output folder (``journal``), keyed by everything that determines them, and skipped
when it is run again with the same inputs; the file is removed once the results are
written (``report.compare.write_compare_outputs``).

The package, by job: ``plan`` (settings, folds and budget draws), ``fit`` (one fold's
fits), ``journal`` (the finished folds on disk), ``summary`` (compare.json's content),
``run`` (:func:`compare_backbones`, which returns the result and writes no result file).
"""

from cxrssl.eval.compare.journal import FINETUNE_STATE, PARTIAL, discard_journal
from cxrssl.eval.compare.plan import (
    DEFAULT_BUDGETS,
    FINETUNED,
    CompareError,
    CompareSettings,
    Fold,
    NamedBackbone,
    TaskPlan,
    budget_name,
    common_image_size,
    plan_findings_task,
    plan_for,
    plan_task,
)
from cxrssl.eval.compare.run import Comparison, compare_backbones
from cxrssl.eval.compare.summary import summarise

__all__ = [
    "DEFAULT_BUDGETS",
    "FINETUNED",
    "FINETUNE_STATE",
    "PARTIAL",
    "CompareError",
    "CompareSettings",
    "Comparison",
    "Fold",
    "NamedBackbone",
    "TaskPlan",
    "budget_name",
    "common_image_size",
    "compare_backbones",
    "discard_journal",
    "plan_findings_task",
    "plan_for",
    "plan_task",
    "summarise",
]
