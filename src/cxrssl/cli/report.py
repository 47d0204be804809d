"""Verbs that gather results into tables and a page: table, report."""

from __future__ import annotations

from pathlib import Path

from cxrssl.cli.common import add_overwrite_flag, add_sweep_flags, data_inputs, output_file, outputs_for
from cxrssl.errors import CxrsslError


def register(verbs) -> None:
    for add in (_report, _table):
        add(verbs)


def _report(verbs) -> None:
    verb = verbs.add_parser("report", help="one self-contained HTML page: config, loss, Table III, sweep, t-SNE, Grad-CAM, errors")
    add_sweep_flags(verb)
    verb.add_argument("--task", action="append", required=True, help="labelled manifest CSV or cache folder (repeatable)")
    verb.add_argument("--compare", action="append", metavar="compare.json", help="add a `cxrssl compare` result (repeatable)")
    verb.add_argument("--finding", help="multi-label task: the finding whose Grad-CAM is shown (default: the best-scored)")
    verb.add_argument("-o", "--output", type=output_file("report", ".html", ".htm"), default="report.html", help="the page (default report.html)")
    verb.set_defaults(handler=report)


def report(args) -> None:
    from cxrssl.cli.common import probe_settings
    from cxrssl.outputs import require_complete
    from cxrssl.report.compare import is_compare, read_result
    from cxrssl.report.html import build_report

    inputs = [args.run, *(p for task in args.task for p in data_inputs(task)), *(args.compare or [])]
    outputs = outputs_for(args, files=[args.output], inputs=inputs)
    compares = [read_result(require_complete(path)) for path in args.compare or []]
    for path, found in zip(args.compare or [], compares):
        if not is_compare(found):
            raise CxrsslError(f"{path}: a probe result, not a compare.json; pass the compare.json of `cxrssl compare` to --compare")
    with outputs.writing():
        output = build_report(
            args.run, args.task, args.output, probe_settings(args), progress=not args.quiet, compares=compares, finding=args.finding
        )
    print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB, self-contained)")


def _table(verbs) -> None:
    verb = verbs.add_parser("table", help="Table III (markdown and CSV) from probe results, or the table of compare results")
    verb.add_argument("results", nargs="+", help="result .json files of `cxrssl probe`, or compare.json files of `cxrssl compare`")
    verb.add_argument("-o", "--output", type=output_file("table", ".md"), default="table.md", help="table.md; table.csv is written beside it")
    add_overwrite_flag(verb)
    verb.set_defaults(handler=table)


def table(args) -> None:
    from cxrssl.fileio import atomic_write_text
    from cxrssl.outputs import require_complete
    from cxrssl.report.compare import read_result, results_tables

    output = Path(args.output)
    markdown, csv_file = output.with_suffix(".md"), output.with_suffix(".csv")
    outputs = outputs_for(args, files=[markdown, csv_file], inputs=args.results)
    text, csv_text = results_tables([read_result(require_complete(path)) for path in args.results])
    with outputs.writing():
        atomic_write_text(markdown, text)
        atomic_write_text(csv_file, csv_text)
    print(text)
    print(f"wrote {markdown} and {csv_file}")
