"""The command line: each verb parses its flags, calls one library function, prints.

One module per group of verbs (``VERB_MODULES``), each verb beside its parser. Errors
the user can fix (CxrsslError, OSError) are printed as one line, without a traceback;
SIGTERM, SIGINT and SIGHUP stop a verb at its next step with exit code 128 + signal,
its locks, temporaries and worker processes cleaned up on the way out.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import signal
import sys
from contextlib import ExitStack

from cxrssl import __version__
from cxrssl.errors import CxrsslError
from cxrssl.interrupt import Interrupted, stopping_on_signals

# The verb modules, in the order of `cxrssl --help`; a new group of verbs is one line here.
VERB_MODULES = ("data", "pretrain", "evaluate", "explain", "report", "export", "demo")

# What to do about an operating-system error, by its errno.
OS_ERROR_FIXES = {
    errno.ENOSPC: "free disk space or write somewhere else",
    errno.EDQUOT: "free disk space or write somewhere else",
    errno.EFBIG: "the file is larger than this system allows (a file-size limit or a full disk); free space or write somewhere else",
    errno.EIO: "an input/output error from the disk: check the disk or write somewhere else",
    errno.EACCES: "choose a location you may write to (or read: check the file's permissions)",
    errno.EPERM: "choose a location you may write to (or read: check the file's permissions)",
    errno.EROFS: "the file system is read-only; choose another output location",
    errno.ENOENT: "check the path",
    errno.EISDIR: "give a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}
RESUME_HINT = {
    "pretrain": "; continue with the same command and --resume",
    "compare": "; the same command continues it",
    "finetune": "; the same command continues it",
    "cache": "; the same command completes it",
}


class OneLineParser(argparse.ArgumentParser):
    """A flag error is one line, ``cxrssl VERB: error: ...`` (exit code 2), as every other error; --help shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="cxrssl", description="Self-supervised pretraining on chest X-rays, and honest evaluation.")
    parser.add_argument("--version", action="version", version=f"cxrssl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error (cxrssl --debug VERB ...)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in VERB_MODULES:
        importlib.import_module(f"cxrssl.cli.{name}").register(verbs)
    return parser


def one_line(error: BaseException) -> str:
    """The message of an expected error: ``error: <what> (<file>): <fix>`` on one line."""
    if isinstance(error, OSError) and not isinstance(error, CxrsslError):
        where = f" ({error.filename})" if error.filename else ""
        fix = OS_ERROR_FIXES.get(error.errno, "check the path and try again")
        text = f"error: {error.strerror or error}{where}: {fix}"
    else:
        text = f"error: {error}"
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Run one verb. Expected failures are one line on stderr and exit code 2 (``check`` uses 1
    for "evaluation would be wrong"); a signal ends it with 128 + the signal's number;
    ``--debug`` shows the traceback instead."""
    args = build_parser().parse_args(argv)
    try:
        with stopping_on_signals(), ExitStack() as args.exit_stack:  # the outputs' locks are released when the verb ends
            return args.handler(args) or 0
    except (CxrsslError, OSError) as error:
        if args.debug:
            raise
        print(f"cxrssl {args.verb}: {one_line(error)}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as stop:
        number = stop.signal if isinstance(stop, Interrupted) else signal.SIGINT
        name = signal.Signals(number).name
        print(f"cxrssl {args.verb}: stopped by {name}{RESUME_HINT.get(args.verb, '')}", file=sys.stderr)
        return 128 + int(number)
