"""The recipe study: which pretraining settings make pretraining beat random initialisation.

Each arm of a study file (``bench/recipe_study.yaml``) is one pretraining run on the
unlabelled pool, judged by ``cxrssl compare`` against random initialisation (paired,
same folds and label budgets) on every task of the study whose image size allows it.
Everything runs through the ``cxrssl`` command line, so what is measured is what a
user gets.

    python bench/recipe_study.py run bench/recipe_study.yaml --work WORK [--arm NAME ...]
    python bench/recipe_study.py table bench/recipe_study.yaml > docs/recipes-table.md
    python bench/recipe_study.py versus bench/recipe_study.yaml ARM_A ARM_B   # paired A - B, from the fold files
    python bench/recipe_study.py versus bench/recipe_study.yaml ARM_A ARM_B --random-init   # their random-init rows

An arm may also re-judge another arm's run instead of pretraining: ``run_of: ARM`` takes
that arm's checkpoints, and ``readout: blocks`` makes every compared backbone (random
initialisation too) read all four residual stages instead of the last one, and
``probe_size: N`` probes them at N px instead of the pretraining size.

``run`` is resumable: a finished step is skipped, a killed pretraining continues with
``--resume``. Checkpoints and caches stay in WORK; the small records of each arm (its
config, the run's log and settings, every compare result) are copied to the study's
``results`` folder, from which ``table`` regenerates the table without WORK.
Shared data is found in ``$CXRSSL_SHARED_DATA`` (default ../shared/data beside the
repository).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CXRSSL_SHARED_DATA", REPOSITORY.parent / "shared" / "data"))
RECORDS = ("config.json", "log.csv", "status.json")
COMPARE_RECORDS = ("compare.json", "compare.csv", "compare_folds.csv", "compare.md")


def copy_record(source: Path, target: Path, work: Path) -> None:
    """Copy a small result file, with this machine's folders replaced by WORK and shared/data."""
    text = source.read_text()
    for folder, name in ((work.resolve(), "WORK"), (DATA.resolve(), "shared/data"), (REPOSITORY, ".")):
        text = text.replace(str(folder), name)
    target.write_text(text)


def cxrssl(*args: str) -> None:
    command = [sys.executable, "-m", "cxrssl", *args]
    print("$ cxrssl " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


def load_study(path: Path) -> dict:
    study = yaml.safe_load(path.read_text())
    names = [arm["name"] for arm in study["arms"]]
    if len(set(names)) != len(names):
        raise SystemExit(f"{path}: arm names must be unique")
    study["results"] = REPOSITORY / study["results"]
    return study


def task_manifest(task: dict, work: Path) -> Path:
    """A task's labelled manifest: from the shared data, or phantoms made once in WORK."""
    if "phantom" in task:
        folder = work / "tasks" / task["name"]
        if not (folder / "labels.csv").is_file():
            spec = task["phantom"]
            cxrssl("phantom", str(folder), "--n", str(spec["n"]), "--size", str(spec["size"]), "--seed", str(spec["seed"]))
        return folder / "labels.csv"
    manifest = DATA / task["manifest"]
    if not manifest.is_file():
        raise SystemExit(f"{manifest}: missing; set CXRSSL_SHARED_DATA to the shared data folder")
    return manifest


JUDGING = (
    "name",
    "about",
    "run_of",
    "readout",
    "probe_size",
    "compare_epochs",
    "pool",
    "phantom_pool",
    "transductive",
    "tasks",
)  # arm keys that are not pretraining settings


def arm_config(study: dict, arm: dict) -> dict:
    """The arm's full pretraining settings: the study's base, then the arm's changes (or those of the arm whose run it judges)."""
    if "run_of" in arm:
        return arm_config(study, next(other for other in study["arms"] if other["name"] == arm["run_of"]))
    config = {**study["base"], **{k: v for k, v in arm.items() if k not in JUDGING}}
    if "augment" in arm:
        config["augment"] = {**study["base"].get("augment", {}), **arm["augment"]}
    return config


def run_arm(study: dict, arm: dict, work: Path) -> None:
    name, config = arm["name"], arm_config(study, arm)
    size, epochs = config["image_size"], config["epochs"]
    folder, results = work / "arms" / name, study["results"] / name
    folder.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    config_file = folder / "config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=True))
    shutil.copyfile(config_file, results / "config.yaml")
    judging = {key: arm[key] for key in JUDGING[2:] if key in arm}
    if judging:
        (results / "judging.yaml").write_text(yaml.safe_dump(judging, sort_keys=True))

    run = work / "arms" / arm.get("run_of", name) / "run"
    complete = (run / "status.json").is_file() and json.loads((run / "status.json").read_text())["state"] == "complete"
    if not complete and "run_of" in arm:
        raise SystemExit(f"arm {name} judges the run of arm {arm['run_of']}: run that arm first")
    if not complete:
        pool, tag = pool_manifest(study, arm, work)
        cache = work / f"pool{size}{tag}.cache"
        if not (cache / "cache.json").is_file():
            cxrssl("cache", str(pool), "-o", str(cache), "--size", str(size), "--quiet")
        resume = ["--resume"] if (run / "state" / "last.json").is_file() else []
        cxrssl("pretrain", "--data", str(cache), "--out", str(run), "--config", str(config_file), "--quiet", *resume)
    for record in RECORDS:
        copy_record(run / record, results / f"run_{record}", work)

    checkpoints = [f"{name} e{epoch}={run / 'checkpoints' / f'epoch_{epoch:04d}.json'}" for epoch in study_epochs(study, arm, epochs)]
    probe_size = arm.get("probe_size", size)
    for task in study["tasks"]:
        if probe_size > task.get("max_size", math.inf) or task["name"] not in arm.get("tasks", [task["name"]]):
            continue
        output = folder / f"compare_{task['name']}"
        if not (output / "compare.json").is_file():
            flags = [f"--checkpoint={c}" for c in checkpoints]
            cxrssl(
                "compare",
                *flags,
                "--init",
                "random",
                "--image-size",
                str(probe_size),
                "--readout",
                arm.get("readout", "last"),
                "--task",
                str(task_manifest(task, work)),
                "--labels",
                task.get("labels", study["labels"]),
                "--folds",
                str(study["folds"]),
                "--repeats",
                str(study["repeats"]),
                "-o",
                str(output),
                "--overwrite",
                "--quiet",
            )
        for record in COMPARE_RECORDS:
            copy_record(output / record, results / f"{task['name']}_{record}", work)
        if "run_of" not in arm:
            knn_record(task, task_manifest(task, work), run, probe_size, results / f"{task['name']}_knn.csv", work)


MONITOR_PATIENTS = 25  # per class: the k-NN monitor's handful of labels (at 10 per class its AUC was below 0.5 on nih_pneumonia)


def knn_record(task: dict, manifest: Path, run: Path, size: int, out: Path, work: Path) -> None:
    """The k-NN monitor (``cxrssl.ssl.monitors.knn_auc``) of every kept checkpoint on MONITOR_PATIENTS patients per class of the task."""
    if out.is_file():
        return
    import csv

    import numpy as np

    from cxrssl.data.manifest import read_manifest, write_manifest
    from cxrssl.data.splits import patient_classes
    from cxrssl.eval.features import BackboneSpec
    from cxrssl.eval.sweep import with_knn_monitor
    from cxrssl.run import RunFolder

    small = work / "monitors" / f"{task['name']}.csv"
    if not small.is_file():
        rows = read_manifest(manifest)
        classes = patient_classes(rows.patient_keys, rows.labels)
        rng = np.random.default_rng(24)
        chosen = set()
        for label in sorted(set(classes.values())):
            patients = sorted(p for p, c in classes.items() if c == label)
            chosen |= set(rng.choice(patients, size=min(MONITOR_PATIENTS, len(patients)), replace=False).tolist())
        small.parent.mkdir(parents=True, exist_ok=True)
        picked = rows.select([i for i, key in enumerate(rows.patient_keys) if key in chosen])
        picked.rows = [type(row)(str(rows.resolve(row)), row.patient_id or row.patient_key, row.label, "", row.extra) for row in picked.rows]
        write_manifest(picked, small)
    folder = RunFolder(run)
    specs = [BackboneSpec.from_checkpoint(path) for path in folder.saved_checkpoints()]
    log = with_knn_monitor(folder.read_log(), specs, small, size)
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "knn_auc"])
        writer.writerows((entry["epoch"], entry["knn_auc"]) for entry in log if "knn_auc" in entry)


def pool_manifest(study: dict, arm: dict, work: Path) -> tuple[Path, str]:
    """The arm's pretraining images: the study's pool, (``pool: [A.csv, B.csv]``) those manifests merged, or (``phantom_pool: {n, size, seed}``) phantoms of their own patients.

    Merged rows keep their patient ids (NIH's are one namespace across its subsets, so a
    patient's films in two subsets stay one patient); a file name seen before (the same
    NIH film in two subsets) is kept once.
    """
    if "phantom_pool" in arm:
        spec = arm["phantom_pool"]
        tag = f"-phantom-{spec['n']}-{spec['size']}-{spec['seed']}"
        folder = work / "pools" / tag[1:]
        if not (folder / "labels.csv").is_file():
            cxrssl("phantom", str(folder), "--n", str(spec["n"]), "--size", str(spec["size"]), "--seed", str(spec["seed"]), "--overwrite")
        return folder / "labels.csv", tag
    if "pool" not in arm:
        return DATA / study["pool"], ""
    import csv
    import hashlib

    names = list(arm["pool"])
    tag = "-" + hashlib.sha256("|".join(names).encode()).hexdigest()[:8]
    folder = work / "pools" / tag[1:]
    merged = folder / "labels.csv"
    if merged.is_file():
        return merged, tag
    rows, seen = [], set()
    for name in names:
        manifest = DATA / name
        with manifest.open(newline="") as handle:
            for row in csv.DictReader(handle):
                path = Path(row["path"])
                path = path if path.is_absolute() else manifest.parent / path
                if path.name in seen:
                    continue
                seen.add(path.name)
                rows.append((str(path), row.get("patient_id", ""), Path(name).parts[0]))
    folder.mkdir(parents=True, exist_ok=True)
    with merged.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "patient_id", "label", "source"])
        writer.writerows((path, patient, "", source) for path, patient, source in rows)
    return merged, tag


def study_epochs(study: dict, arm: dict, epochs: int) -> list[int]:
    """The checkpoints compared: the last epoch, and those the arm (or else the study) names."""
    named = arm.get("compare_epochs", study.get("compare_epochs", []))
    return sorted({epochs, *(epoch for epoch in named if epoch < epochs)}, reverse=True)


# --- the table ---------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _delta(difference: dict) -> str:
    mark = " ✓" if difference["low"] > 0 else (" ✗" if difference["high"] < 0 else "")
    return f"{100 * difference['value']:+.1f} [{100 * difference['low']:+.1f}, {100 * difference['high']:+.1f}]{mark}"


def _wall_minutes(log_csv: Path) -> float:
    """Pretraining minutes as the fastest epoch times the epochs: the idle machine's time, unaffected by
    epochs that other jobs on the two cores slowed down (every epoch does the same work)."""
    import csv

    with log_csv.open() as handle:
        walls = [float(row["wall_s"]) for row in csv.DictReader(handle)]
    return min(walls) * len(walls) / 60


def _speed(results: Path) -> tuple[str, str]:
    """The fastest epoch's images per second (the idle machine's), and the CPU that ran the arm (recorded since issue 24)."""
    import csv

    with (results / "run_log.csv").open() as handle:
        speed = max(float(row["images_per_s"]) for row in csv.DictReader(handle))
    cpu = json.loads((results / "run_config.json").read_text()).get("cpu", "not recorded")
    return f"{speed:.0f}", cpu


def table(study: dict) -> str:
    lines = [
        "Paired AUC difference, pretrained minus random initialisation, in AUC points with its 95 % interval "
        "(corrected resampled t-test over 5 × 5 patient-grouped folds); ✓ interval above 0, ✗ below 0. "
        "The pretrained AUC is in parentheses. Only the last epoch of each run is shown. Pretraining minutes: "
        "the fastest epoch's wall time times the epochs (the idle machine's time), two cores, bf16 autocast.",
        "",
    ]
    cpus: dict[str, set] = {}
    for task in study["tasks"]:
        budgets = task.get("labels", study["labels"]).split(",")
        lines += [
            f"**{task['name']}**",
            "",
            "| arm | what changes | pretraining (min) | img/s | " + " | ".join(f"{b}/class" for b in budgets) + " |",
            "|---|---|---|---|" + "---|" * len(budgets),
        ]
        randoms = {}  # random initialisation's AUC per probe size and readout
        for arm in study["arms"]:
            found = study["results"] / arm["name"] / f"{task['name']}_compare.json"
            if not found.is_file():
                continue
            payload = json.loads(found.read_text())
            epochs = arm_config(study, arm)["epochs"]
            cells = {}
            for row in payload["tasks"][0]["rows"]:
                if row["backbone"] == f"{arm['name']} e{epochs}" and row["difference"]:
                    cells[row["budget"]] = f"{_delta(row['difference']['auc'])} ({_pct(row['metrics']['auc']['value'])})"
            random_init = next(b for b in payload["backbones"] if b["name"] == "random init")
            judged = f"{random_init['image_size']} px" + (
                "" if random_init.get("readout", "last") == "last" else f", {random_init['readout']} readout"
            )
            randoms[judged] = {row["budget"]: _pct(row["metrics"]["auc"]["value"]) for row in payload["tasks"][0]["rows"] if not row["difference"]}
            wall = _wall_minutes(study["results"] / arm["name"] / "run_log.csv")
            speed, cpu = _speed(study["results"] / arm["name"])
            cpus.setdefault(cpu, set()).add(arm.get("run_of", arm["name"]))
            lines.append(
                f"| {arm['name']} | {arm.get('about', '')} | {wall:.0f} | {speed} | " + " | ".join(cells.get(b, "–") for b in budgets) + " |"
            )
        for judged, random in randoms.items():
            label = f"random init AUC, {judged}"
            lines.append(f"| {label} | | | | " + " | ".join(random.get(b, "–") for b in budgets) + " |")
        lines.append("")
    lines.append("Machines (each arm's run config): " + "; ".join(f"{cpu}: {', '.join(sorted(arms))}" for cpu, arms in cpus.items()))
    return "\n".join(lines)


def monitors(study: dict) -> str:
    """Which checkpoint each monitor keeps, per task and label budget, and its Spearman rho with the probe AUC.

    Over the arms whose every kept checkpoint was compared (``compare_epochs``): the AUC
    of each checkpoint is compare's mean over the 5 x 5 folds; RankMe, alignment and
    uniformity are the run's log at that epoch; the k-NN AUC is that checkpoint's on 25
    patients per class of the task (``knn_record``; they are also among the compare's
    films, so the k-NN monitor has seen a few labels of the task, as a user would).
    """
    import csv

    import numpy as np
    from scipy.stats import spearmanr

    from cxrssl.eval.sweep import monitor_choices
    from cxrssl.ssl.monitors import MONITOR_COLUMNS

    names = ["last", *MONITOR_COLUMNS]
    lines = [
        "AUC points lost against the arm's best checkpoint when the monitor chooses (mean over the arms, then the worst arm), "
        "and Spearman's rho between the monitor and the probe AUC over every checkpoint of every arm (then the mean of the rho within each arm):",
        "",
    ]
    for task in study["tasks"]:
        budgets = task.get("labels", study["labels"]).split(",")
        lost = {(b, n): [] for b in budgets for n in names}
        pooled = {(b, n): [] for b in budgets for n in names[1:]}
        within = {(b, n): [] for b in budgets for n in names[1:]}
        arms_used = []
        for arm in study["arms"]:
            results = study["results"] / arm["name"]
            found, knn = results / f"{task['name']}_compare.json", results / f"{task['name']}_knn.csv"
            if "run_of" in arm or not found.is_file() or not knn.is_file():
                continue
            payload = json.loads(found.read_text())
            with (results / "run_log.csv").open() as handle:
                log = {int(row["epoch"]): row for row in csv.DictReader(handle)}
            with knn.open() as handle:
                for row in csv.DictReader(handle):
                    log[int(row["epoch"])]["knn_auc"] = row["knn_auc"]
            prefix = f"{arm['name']} e"
            rows = [r for r in payload["tasks"][0]["rows"] if r["backbone"].startswith(prefix)]
            if len({r["backbone"] for r in rows}) < 3:
                continue
            arms_used.append(arm["name"])
            for budget in budgets:
                aucs = {int(r["backbone"][len(prefix) :]): r["metrics"]["auc"]["value"] for r in rows if r["budget"] == budget}
                for name, choice in monitor_choices(aucs, list(log.values())).items():
                    lost[budget, name].append(choice["auc_lost"])
                for name in names[1:]:
                    pairs = [(float(log[e].get(name) or "nan"), auc) for e, auc in aucs.items()]
                    pairs = [(v, a) for v, a in pairs if np.isfinite(v)]
                    pooled[budget, name] += pairs
                    if len(pairs) >= 3:
                        within[budget, name].append(spearmanr(*zip(*pairs)).statistic)
        if not arms_used:
            continue
        lines += [f"**{task['name']}** ({len(arms_used)} arms: {', '.join(arms_used)})", ""]
        lines += ["| monitor | " + " | ".join(f"{b}/class: lost (worst) · rho (within)" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
        for name in names:
            cells = []
            for budget in budgets:
                values = lost[budget, name]
                cell = f"{100 * np.mean(values):.1f} ({100 * max(values):.1f})" if values else "–"
                if name != "last" and len(pooled[budget, name]) >= 3:
                    rho = spearmanr(*zip(*pooled[budget, name])).statistic
                    cell += f" · {rho:+.2f} ({np.mean(within[budget, name]):+.2f})" if within[budget, name] else f" · {rho:+.2f}"
                cells.append(cell)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def versus(study: dict, first: str, second: str, random_init: bool = False) -> str:
    """Paired AUC difference between two arms' last epochs, fold by fold.

    Every arm is compared on the same plan (folds and label draws come from the task and
    the seed alone), which the training and test sizes of both fold files' random-init
    rows must confirm (their AUCs may differ: another readout or probe size); the interval
    is the corrected resampled t over the same folds, with K-fold CV's ratio 1/(K-1).
    """
    import csv

    import numpy as np

    from cxrssl.eval.stats import corrected_t

    epochs = {arm["name"]: arm_config(study, arm)["epochs"] for arm in study["arms"]}
    which = "random-init rows" if random_init else "last epochs"
    lines = [f"Paired Δ AUC, {first} minus {second} ({which}), in AUC points, 95 % interval, p:", ""]
    for task in study["tasks"]:
        paths = {arm: study["results"] / arm / f"{task['name']}_compare_folds.csv" for arm in (first, second)}
        if not all(path.is_file() for path in paths.values()):
            lines.append(
                f"- {task['name']}: not judged in both arms (" + ", ".join(f"{path} missing" for path in paths.values() if not path.is_file()) + ")"
            )
            continue
        folds = {}
        for arm, path in paths.items():
            with path.open() as handle:
                folds[arm] = list(csv.DictReader(handle))

        def key(row):
            return row["budget"], int(row["repeat"]), int(row["fold"])

        plans = [
            {key(r): (r["n_train"], r["n_train_patients"], r["n_test"]) for r in folds[arm] if r["backbone"] == "random init"}
            for arm in (first, second)
        ]
        if plans[0] != plans[1]:
            return f"{task['name']}: the two arms were not compared on the same folds and label draws (their training and test sizes differ)"
        compared = {arm: "random init" if random_init else f"{arm} e{epochs[arm]}" for arm in (first, second)}
        auc = {arm: {key(r): float(r["auc"]) for r in folds[arm] if r["backbone"] == compared[arm]} for arm in (first, second)}
        cells = []
        for budget in task.get("labels", study["labels"]).split(","):
            keys = sorted(k for k in auc[first] if k[0] == budget and k in auc[second])
            estimate = corrected_t(np.array([auc[first][k] - auc[second][k] for k in keys]), 1 / (study["folds"] - 1))
            cells.append(f"{budget}: {100 * estimate.value:+.1f} [{100 * estimate.low:+.1f}, {100 * estimate.high:+.1f}] p {estimate.p_value:.2f}")
        lines.append(f"- {task['name']}: " + "; ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "table", "versus", "monitors"))
    parser.add_argument("study", type=Path)
    parser.add_argument("arms", nargs="*", help="versus: the two arms, A then B")
    parser.add_argument(
        "--random-init", action="store_true", help="versus: compare the two arms' random-init rows (e.g. two readouts) instead of their last epochs"
    )
    parser.add_argument("--work", type=Path, default=Path("recipe-study"), help="checkpoints and caches (not committed)")
    parser.add_argument("--arm", action="append", help="run only these arms (default: all, in order)")
    args = parser.parse_args()
    study = load_study(args.study)
    if args.action == "table":
        print(table(study))
        return
    if args.action == "monitors":
        print(monitors(study))
        return
    if args.action == "versus":
        if len(args.arms) != 2:
            raise SystemExit("versus needs two arm names: A B")
        print(versus(study, *args.arms, random_init=args.random_init))
        return
    for arm in study["arms"]:
        if args.arm and arm["name"] not in args.arm:
            continue
        started = time.time()
        print(f"=== arm {arm['name']}: {arm.get('about', '')}", flush=True)
        run_arm(study, arm, args.work)
        print(f"=== arm {arm['name']} done in {(time.time() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
