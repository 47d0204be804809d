"""The report's figures: loss curve, checkpoint sweep (Fig. 2), label efficiency and paired differences.

Drawn through ``cxrssl.plotting`` (matplotlib's file-only backend, the shared style);
user-given names (titles, backbones in legends) pass through ``plot_text``.
"""

from __future__ import annotations

from pathlib import Path

from cxrssl.plotting import integer_ticks, light_grid, plot_text, plt, save_figure


def plot_loss_curve(epochs: list[int], losses: list[float], out_path: str | Path, title: str = "Pretext loss") -> Path:
    """Pretext loss per epoch: the left half of the paper's Fig. 2."""
    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    axes.plot(epochs, losses, marker="o")
    axes.set_xlabel("epoch")
    integer_ticks(axes)
    axes.set_ylabel("pretext loss")
    axes.set_title(plot_text(title))
    light_grid(axes)
    return save_figure(figure, out_path)


def plot_sweep(
    loss_epochs: list[int],
    losses: list[float],
    rows: list[dict],
    out_path: str | Path,
    title: str = "",
    monitors: dict[str, list[float]] | None = None,
) -> Path:
    """The paper's Fig. 2: pretext loss per epoch, and downstream ACC / AUC (95 % CI) per checkpoint;
    with ``monitors`` (values per epoch of the log), a third panel of the label-free monitors."""
    panels = 3 if monitors else 2
    figure, axes_row = plt.subplots(1, panels, figsize=(5.5 * panels, 4), dpi=120)
    loss_axes, metric_axes = axes_row[0], axes_row[1]
    loss_axes.plot(loss_epochs, losses, marker=".", color="tab:gray")
    loss_axes.set(xlabel="epoch", ylabel="pretext loss", title="pretext loss")
    if monitors:
        monitor_axes = axes_row[2]
        other = monitor_axes.twinx()
        for (name, values), colour in zip(monitors.items(), ("tab:green", "tab:purple", "tab:brown")):
            target = monitor_axes if name == "rankme" else other
            target.plot(loss_epochs, values, marker=".", color=colour, label=name)
        monitor_axes.set(xlabel="epoch", ylabel="RankMe (effective rank)", title="label-free monitors")
        other.set_ylabel("alignment, uniformity")
        handles = [h for axes in (monitor_axes, other) for h in axes.get_legend_handles_labels()[0]]
        monitor_axes.legend(handles, [h.get_label() for h in handles], fontsize=8)
    epochs = [row["epoch"] for row in rows]
    for metric, colour in (("accuracy", "tab:blue"), ("auc", "tab:orange")):
        values = [100 * row["metrics"][metric] for row in rows]
        # --bootstrap 0 leaves no intervals: the points are drawn without bars.
        bounds = [row["intervals_95"].get(metric, (row["metrics"][metric],) * 2) for row in rows]
        low = [100 * (row["metrics"][metric] - bound[0]) for row, bound in zip(rows, bounds)]
        high = [100 * (bound[1] - row["metrics"][metric]) for row, bound in zip(rows, bounds)]
        metric_axes.errorbar(epochs, values, yerr=[low, high], marker="o", capsize=3, color=colour, label=metric.upper().replace("ACCURACY", "ACC"))
    metric_axes.set(xlabel="checkpoint epoch (0 = random init)", ylabel="percent", title="downstream probe, 95 % CI")
    metric_axes.legend()
    for axes in axes_row:
        light_grid(axes)
        integer_ticks(axes)
    if title:
        figure.suptitle(plot_text(title))
    return save_figure(figure, out_path)


def _budget_positions(task: dict) -> tuple[list[str], dict[str, float], dict[str, str]]:
    """x position and tick label of each budget: its patients per class; 'all' at the mean training patients per class."""
    budgets = list(dict.fromkeys(row["budget"] for row in task["rows"]))
    positions, labels = {}, {}
    for budget in budgets:
        if budget == "all":
            per_class = next(row["train_patients"] for row in task["rows"] if row["budget"] == "all") / (1 if task.get("findings") else 2)
            positions[budget] = max(per_class, max((float(b) for b in budgets if b != "all"), default=1) * 1.5)
            labels[budget] = f"all\n(~{per_class:.0f})"
        else:
            positions[budget], labels[budget] = float(budget), budget
    return budgets, positions, labels


def _budget_panels(payload: dict, out_path: str | Path, ylabel: str, draw) -> Path:
    """One panel per task, labelled patients per class on a log x axis; ``draw(axes, task, positions)`` fills a panel."""
    tasks = payload["tasks"]
    figure, axes_row = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), dpi=120, squeeze=False)
    for axes, task in zip(axes_row[0], tasks):
        budgets, positions, labels = _budget_positions(task)
        draw(axes, task, positions)
        axes.set_xscale("log")
        axes.set_xticks([positions[b] for b in budgets], [labels[b] for b in budgets])
        axes.minorticks_off()
        unit = task.get("budget_unit", "patients per class")
        axes.set(
            xlabel=f"labelled {unit}", ylabel=ylabel if not task.get("findings") else f"mean {ylabel} over findings", title=plot_text(task["task"])
        )
        light_grid(axes)
        axes.legend(fontsize=8)
    return save_figure(figure, out_path)


def plot_label_efficiency(payload: dict, out_path: str | Path) -> Path:
    """AUC against labelled patients per class (log axis): one line and 95 % band per backbone, a panel per task."""

    def draw(axes, task, positions):
        for backbone in dict.fromkeys(row["backbone"] for row in task["rows"]):
            rows = [row for row in task["rows"] if row["backbone"] == backbone]
            x = [positions[row["budget"]] for row in rows]
            auc = [row["metrics"]["auc"] for row in rows]
            line = axes.plot(x, [100 * a["value"] for a in auc], marker="o", label=plot_text(backbone))[0]
            axes.fill_between(x, [100 * a["low"] for a in auc], [100 * a["high"] for a in auc], color=line.get_color(), alpha=0.15)

    return _budget_panels(payload, out_path, "AUC (%), 95 % CI", draw)


def plot_paired_differences(payload: dict, out_path: str | Path) -> Path:
    """Each backbone's AUC minus the reference's per budget, with its paired 95 % interval; 0 = no gain."""

    def draw(axes, task, positions):
        others = list(dict.fromkeys(row["backbone"] for row in task["rows"] if row["difference"]))
        for offset, backbone in enumerate(others):
            rows = [row for row in task["rows"] if row["backbone"] == backbone]
            shift = 1.06 ** (offset - (len(others) - 1) / 2)  # side by side on the log axis
            x = [positions[row["budget"]] * shift for row in rows]
            d = [row["difference"]["auc"] for row in rows]
            values = [100 * e["value"] for e in d]
            axes.errorbar(
                x,
                values,
                yerr=[[v - 100 * e["low"] for v, e in zip(values, d)], [100 * e["high"] - v for v, e in zip(values, d)]],
                marker="o",
                capsize=3,
                linestyle="none",
                label=plot_text(backbone),
            )
        axes.axhline(0, color="black", linewidth=0.8)

    return _budget_panels(payload, out_path, f"Δ AUC vs {plot_text(payload['reference'])} (points)", draw)
