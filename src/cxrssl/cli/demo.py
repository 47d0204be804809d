"""``cxrssl demo``: the whole method end to end on phantom radiographs."""

from __future__ import annotations

from cxrssl.cli.common import add_overwrite_flag, outputs_for, seed_value


def register(verbs) -> None:
    verb = verbs.add_parser("demo", help="the whole method end to end on phantom radiographs (a few minutes)")
    verb.add_argument("--out", default="cxrssl-demo", help="output folder (default ./cxrssl-demo)")
    verb.add_argument("--seed", type=seed_value, default=0)
    add_overwrite_flag(verb)
    verb.set_defaults(handler=run)


def run(args) -> None:
    from cxrssl.demo import DemoSettings, run_demo

    outputs = outputs_for(args, folders=[args.out])
    with outputs.writing():
        run_demo(args.out, DemoSettings(seed=args.seed))
