"""Command lines that many tests run."""

from __future__ import annotations


def tiny_pretrain(data, out, epochs: int = 1, *extra: str) -> list[str]:
    """``cxrssl pretrain`` (the verb and its arguments) of the demo preset at 32 px, batch 16: the smallest real run."""
    return [
        "pretrain",
        "--data",
        str(data),
        "--out",
        str(out),
        "--config",
        "demo",
        "--image-size",
        "32",
        "--batch-size",
        "16",
        "--epochs",
        str(epochs),
        "--quiet",
        *extra,
    ]
