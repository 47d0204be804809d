"""``cxrssl export``: a checkpoint or saved model as a torchvision state dict (.pth, .safetensors), or a saved model as ONNX.

The output's suffix picks the format; ``--rgb`` spreads the one-channel stem over three
colour channels. What the files hold and how to preprocess for them: ``cxrssl.exporter``.
"""

from __future__ import annotations

from pathlib import Path

from cxrssl.cli.common import checkpoint_inputs, outputs_for


def register(verbs) -> None:
    """Add the ``export`` verb to ``verbs`` (an argparse subparsers action)."""
    parser = verbs.add_parser(
        "export",
        help="a checkpoint or saved model as a torchvision/timm state dict (.pth, .safetensors) or a saved model as ONNX (.onnx)",
    )
    parser.add_argument("source", metavar="SOURCE", help="a checkpoint's .json, or a saved model's folder (`probe`/`finetune --save-model`)")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="the file to write; its suffix picks the format: .pth, .safetensors (the backbone; of a saved model, "
        "its probe as fc) or .onnx (a saved model, outputting predict's probabilities)",
    )
    parser.add_argument("--rgb", action="store_true", help="three-channel stem (each channel the grey filter / 3) for stock RGB networks")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing output file that this same command did not write (never an input)"
    )
    parser.set_defaults(handler=run)


def run(args) -> int:
    from cxrssl.exporter import export  # torch is imported when the verb runs, not when the command line is built

    source = Path(args.source)
    inputs = [source] if source.is_dir() else checkpoint_inputs(source)
    outputs = outputs_for(args, files=[args.output], inputs=inputs)
    with outputs.writing():  # the contract decided: export may replace what it is allowed to
        result = export(args.source, args.output, rgb=args.rgb, overwrite=True)
    print(result.describe())
    return 0
