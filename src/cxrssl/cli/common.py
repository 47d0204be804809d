"""What several verbs share: argument types, flag groups, and the output contract's set-up.

Choices come from the registries (``METHODS``, ``ARCHITECTURES``, ``ADAPTERS``,
``READOUTS``), never from copies of them.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from cxrssl.outputs import Outputs

DEFAULT_LABELS = (10, 25, 50, 100, 250, None)
SPLIT_POLICY_HELP = (
    "a patient in both parts of the manifest's split: refuse (default), or purge: keep the test part and drop "
    "that patient's training images (counted in the output)"
)
INIT_HELP = (
    "a backbone that was not pretrained here: random (the baseline), imagenet (torchvision's ImageNet weights, "
    "from its cache) or a .pth/.safetensors state dict or cxrssl checkpoint .json"
)
FINDINGS_HELP = (
    "evaluate per finding (a manifest with findings columns): 'all' or names separated by commas; "
    "default: per finding when the manifest has findings and no label"
)
MIN_PATIENTS_HELP = "per finding: positive and negative labelled patients a test part needs for the finding to be scored (default 5)"
OVERWRITE_HELP = "replace existing outputs that this same command did not write (never an input)"
# Flags that change nothing in a result: left out of the key that says "the same command".
COSMETIC = {"quiet", "overwrite", "debug", "handler", "verb", "jobs", "workers", "limit", "exit_stack"}


# --- argument types ----------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got {text!r}")
    return value


MAX_SEED = 2**32 - 1  # what numpy's and scikit-learn's generators take


def seed_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to {MAX_SEED}, got {text!r}")
    return value


def bounded_int(low: int, high: int, what: str):
    """A whole number in [low, high] (e.g. a batch size, an image side)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what} from {low} to {high}, got {text!r}")
        return value

    return parse


fold_count = bounded_int(2, 1000, "a number of cross-validation folds")  # one fold is no cross-validation

FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def output_file(what: str, *suffixes: str):
    """An argparse type for a file output whose suffix must say the format written, e.g.
    ``output_file("manifest", ".csv")``: a name of another suffix (features as ``.csv``,
    a table as ``.txt``) or none (matplotlib would add ``.png`` unchecked) is refused at once."""

    def parse(text: str) -> str:
        if Path(text).suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(
                f"a {what} is written as {' or '.join(suffixes)}: name it so, e.g. {Path(text).stem or what}{suffixes[0]} (got {text!r})"
            )
        return text

    return parse


figure_path = output_file("figure", *FIGURE_SUFFIXES)


def bootstrap_count(text: str) -> int:
    """Bootstrap resamples: 0 (no intervals) or more (tests use 20; 1,000 or more for intervals to report)."""
    return non_negative_int(text)


def positive_float(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def fraction(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1 (exclusive), got {text!r}")
    return value


def int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs like 10,25,50,100, got {text!r}")
    return values


def budgets(text: str) -> list[int | None]:
    found = []
    for part in text.split(","):
        part = part.strip().lower()
        if part == "all":
            found.append(None)
        elif part.isdigit() and int(part) > 0:
            found.append(int(part))
        elif part:
            raise argparse.ArgumentTypeError(f"expected labelled patients per class like 10,25,50,100,250,all, got {text!r}")
    if not found:
        raise argparse.ArgumentTypeError("give at least one label budget, e.g. 25,all")
    return sorted(set(found), key=lambda b: float("inf") if b is None else b)


def findings(text: str) -> tuple[str, ...]:
    """``all`` (every finding of the task: empty tuple) or comma-separated finding names."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError("give 'all' or finding names separated by commas, e.g. Atelectasis,Edema")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r} names a finding twice; name each once")
    return () if names == ("all",) else names


def fractions(text: str) -> dict[str, float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three fractions train,val,test like 0.7,0.1,0.2, got {text!r}")
    return dict(zip(("train", "val", "test"), values))


def method_setting(text: str) -> tuple[str, str]:
    """``key=value`` of ``--method-setting`` (the value is typed and checked by the method)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. temperature=0.2, got {text!r}")
    return key.strip(), value.strip()


# --- flag groups ---------------------------------------------------------------------------


def add_readout_flag(verb) -> None:
    """``--readout``: which features of the frozen backbone the probe reads; its default is the library's (``DEFAULT_READOUT``)."""
    from cxrssl.eval.features import DEFAULT_READOUT, READOUTS

    verb.add_argument(
        "--readout",
        choices=list(READOUTS),
        default=DEFAULT_READOUT,
        help="features the probe reads: " + "; ".join(f"{name}: {about}" for name, about in READOUTS.items()) + f" (default {DEFAULT_READOUT})",
    )


def architectures() -> str:
    """The registry's architectures, for help texts (the name itself is checked by the library, with one line)."""
    from cxrssl.models import ARCHITECTURES

    return ", ".join(ARCHITECTURES)


def add_overwrite_flag(verb) -> None:
    verb.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def add_backbone_flags(verb) -> None:
    from cxrssl.models import DEFAULT_ARCH

    which = verb.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="checkpoint .json of a pretraining run")
    which.add_argument("--init", metavar="random|imagenet|FILE", help=INIT_HELP)
    verb.add_argument("--arch", help=f"architecture for --init: {architectures()} (default {DEFAULT_ARCH}); with --checkpoint, checked against it")
    verb.add_argument("--image-size", type=positive_int, default=128, help="image size for --init")
    verb.add_argument("--seed", type=seed_value, default=0, help="seed of --init random, the split and the bootstrap")
    verb.add_argument("--quiet", action="store_true")


def add_findings_flags(verb) -> None:
    verb.add_argument("--findings", type=findings, metavar="all|A,B,...", help=FINDINGS_HELP)
    verb.add_argument("--min-patients", type=positive_int, default=5, help=MIN_PATIENTS_HELP)


def add_split_policy_flag(verb) -> None:
    """Every verb that probes a manifest's own split has it (the leak error suggests it)."""
    verb.add_argument("--split-policy", choices=("refuse", "purge"), default="refuse", help=SPLIT_POLICY_HELP)


def add_result_flags(verb, output: str, label: str) -> None:
    """What probe and finetune share: the backbone, the task and its split, the result file and its table row."""
    add_backbone_flags(verb)
    verb.add_argument("--task", required=True, help="labelled manifest CSV, or a cache folder of one")
    verb.add_argument("--positive", help="the disease class (default: the class that is not normal)")
    verb.add_argument("-o", "--output", type=output_file("result", ".json"), default=output, help=f"result JSON (default {output})")
    verb.add_argument("--dataset", help="dataset name for tables (default: from the manifest's name)")
    verb.add_argument("--label", help=f"row label for tables (default: {label})")
    verb.add_argument("--bootstrap", type=bootstrap_count, default=1000, help="bootstrap resamples for the 95%% CIs")
    add_split_policy_flag(verb)
    add_findings_flags(verb)
    add_overwrite_flag(verb)


def add_finetune_flags(verb) -> None:
    verb.add_argument("--epochs", type=positive_int, default=20, help="fine-tuning: at most this many epochs (default 20)")
    verb.add_argument(
        "--batch-size", type=bounded_int(2, 4096, "a batch size"), default=32, help="fine-tuning batch (default 32; BatchNorm needs 2 or more)"
    )
    verb.add_argument("--lr", type=positive_float, default=1e-3, help="fine-tuning: learning rate of the head (default 1e-3)")
    verb.add_argument("--backbone-lr", type=positive_float, default=1e-4, help="fine-tuning: learning rate of the backbone (default 1e-4)")
    verb.add_argument("--patience", type=positive_int, default=5, help="fine-tuning: stop after this many epochs without a better validation AUC")
    verb.add_argument("--val-fraction", type=fraction, default=0.2, help="fine-tuning: share of training patients held out to pick the epoch")
    verb.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def add_budget_flags(verb, default) -> None:
    """Label budgets and the folds they are drawn on: compare's design, also sweep's per-budget choice of checkpoint."""
    verb.add_argument(
        "--labels",
        type=budgets,
        default=default,
        metavar="10,25,...,all",
        help="labelled patients per class drawn from each training part "
        + ("(default 10,25,50,100,250,all)" if default else "(default: none, one probe on one split)")
        + "; for a task evaluated per finding, labelled patients in all",
    )
    verb.add_argument("--folds", type=fold_count, default=5, help="outer patient-grouped folds (default 5)")
    verb.add_argument("--repeats", type=positive_int, default=5, help="repetitions of the folds / training draws (default 5)")
    verb.add_argument("--inner-folds", type=fold_count, default=5, help="folds of the probe's C search inside each training part (default 5)")
    verb.add_argument("--jobs", type=non_negative_int, default=0, help="worker processes for the fits (default: one per core)")


def add_sweep_flags(verb) -> None:
    verb.add_argument("--run", required=True, help="run folder of `cxrssl pretrain`")
    verb.add_argument("--positive", help="the disease class (default: the class that is not normal)")
    verb.add_argument("--seed", type=seed_value, default=0)
    verb.add_argument("--bootstrap", type=bootstrap_count, default=1000, help="bootstrap resamples for the 95%% CIs")
    verb.add_argument("--quiet", action="store_true")
    add_split_policy_flag(verb)
    add_findings_flags(verb)
    add_overwrite_flag(verb)


# --- settings built from flags ------------------------------------------------------------


def probe_settings(args):
    from cxrssl.eval.probe import ProbeSettings

    return ProbeSettings(
        positive=getattr(args, "positive", None),
        seed=args.seed,
        bootstrap=getattr(args, "bootstrap", 1000),
        folds=getattr(args, "inner_folds", getattr(args, "folds", 5)),  # the C search's folds (compare's --folds are outer folds)
        split_policy=args.split_policy,  # every probing verb has the flag (add_split_policy_flag)
        findings=getattr(args, "findings", None),
        min_patients=getattr(args, "min_patients", 5),
    )


def finetune_settings(args):
    from cxrssl.eval.finetune import FinetuneSettings

    return FinetuneSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        head_lr=args.lr,
        backbone_lr=args.backbone_lr,
        patience=args.patience,
        val_fraction=args.val_fraction,
        seed=args.seed,
        device=args.device,
    )


def backbone_spec(args):
    from cxrssl.eval.backbones import backbone_spec as spec_of

    # Verbs without --readout (finetune, gradcam) work from the last stage.
    readout = getattr(args, "readout", "last")
    return spec_of(checkpoint=args.checkpoint, init=args.init, arch=args.arch, image_size=args.image_size, seed=args.seed, readout=readout)


# --- the output contract ------------------------------------------------------------------


def settings_of(args) -> dict:
    """What defines a command's result: its flags, paths resolved, cosmetic flags left out."""
    values = {}
    for name, value in sorted(vars(args).items()):
        if name in COSMETIC or callable(value):
            continue
        values[name] = _resolved(name, value)
    return values


# Flags that name files or folders: resolved in the key, whether they exist yet or not.
PATH_FLAGS = {
    "output",
    "out",
    "task",
    "data",
    "manifest",
    "checkpoint",
    "checkpoints",
    "run",
    "model",
    "json",
    "root",
    "config",
    "save_model",
    "heatmaps",
    "gradcam",
    "results",
    "images",
    "compare",
}


def _resolved(name: str, value):
    if isinstance(value, (list, tuple)):
        return [_resolved(name, v) for v in value]
    if not isinstance(value, str) or not value:
        return value
    if name in PATH_FLAGS or "/" in value or Path(value).exists():
        named, _, path = value.rpartition("=") if name == "checkpoint" and "=" in value and not Path(value).exists() else ("", "", value)
        return (f"{named}=" if named else "") + str(Path(path).resolve())
    return value


def manifest_images(path) -> list[Path]:
    """The image files a manifest CSV names (read cheaply; a bad manifest is refused later, by its reader)."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = csv.DictReader(handle)
            return [path.parent / row["path"] for row in rows if row.get("path")]
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError):
        return []


def checkpoint_inputs(path) -> list[Path]:
    """A checkpoint .json and the weights beside it (or a weights file alone)."""
    if not path:
        return []
    path = Path(path)
    return [path, path.with_suffix(".safetensors"), path.with_suffix(".json")]


def data_inputs(path) -> list[Path]:
    """A manifest and its images, or a cache folder."""
    if not path:
        return []
    return [Path(path), *manifest_images(path)]


def outputs_for(args, *, files=(), folders=(), inputs=(), keep_finished: str | None = None) -> Outputs:
    """The outputs of this command, checked (before any work) against its inputs and existing files."""
    overwrite = getattr(args, "overwrite", False)
    outputs = Outputs(
        args.verb, settings_of(args), files=files, folders=folders, inputs=inputs, overwrite=overwrite, keep_finished=keep_finished
    ).check()
    stack = getattr(args, "exit_stack", None)
    if stack is not None and (outputs.files or outputs.folders):
        stack.enter_context(outputs.holding())  # held until the verb ends: a second writer is refused from the start
    return outputs


def sibling(path, suffix: str) -> Path:
    """``NAME<suffix>`` beside ``path`` (e.g. r.json -> r_predictions.csv): the one rule for sibling names."""
    path = Path(path)
    return path.with_name(path.stem + suffix)
