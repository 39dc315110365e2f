"""The CLI's error boundary: what ``yolo-edge`` prints when a command fails.

* A user error (:class:`~yolo_edge.errors.YoloEdgeError`) or an environment error (``OSError``:
  permission denied, disk full, ...) is one line, ``yolo-edge CMD: error: ...``, exit code 1.
* Anything else is a bug: one line saying ``internal error``, exit code 1, and the traceback only
  with ``--debug`` or ``YOLO_EDGE_DEBUG=1``.
* Usage errors (a bad option or value) are argparse's: one line and exit code 2.

Every message goes through :func:`~yolo_edge.redact.redact_url` (no credentials on a terminal or in
the journal) and loses ANSI escapes and further lines (a library's multi-line message).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback

from .errors import YoloEdgeError
from .redact import redact_url

DEBUG_ENV = "YOLO_EDGE_DEBUG"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def debug_enabled(args=None) -> bool:
    env = os.environ.get(DEBUG_ENV, "").strip().lower()
    return bool(getattr(args, "debug", False)) or env not in ("", "0", "false", "no", "off")


def add_debug_flag(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """``--debug`` on the top-level parser and (without overriding it) on each subcommand's, nested ones too."""
    kw = {} if top else {"default": argparse.SUPPRESS}
    try:
        parser.add_argument("--debug", action="store_true", help=f"show the traceback of an internal error "
                                                                   f"(or set {DEBUG_ENV}=1)", **kw)
    except argparse.ArgumentError:  # the subcommand has its own --debug
        pass
    for action in parser._actions:  # nested subcommands (yolo-edge data check ... --debug)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                add_debug_flag(sub)


def one_line(message) -> str:
    """The first non-empty line of ``message``, without ANSI escapes and credentials."""
    text = _ANSI.sub("", str(message))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return redact_url(lines[0] if lines else text.strip())


def _os_error(e: OSError) -> str:
    what = e.strerror or str(e) or type(e).__name__
    name = f": {e.filename}" if e.filename else ""
    hint = {"ENOSPC": "free some disk space", "EACCES": "check the permissions or choose another path",
            "EROFS": "choose a writable path", "EEXIST": "choose another path or remove it",
            "ENOTDIR": "a part of the path is a file, not a folder", "EISDIR": "give a file, not a folder"}
    import errno

    code = errno.errorcode.get(e.errno or 0, "")
    return f"{what}{name}" + (f" ({hint[code]})" if code in hint else "")


def report(command: str, e: BaseException, debug: bool = False) -> int:
    """Print the failure of ``yolo-edge COMMAND`` as described above; return the exit code."""
    prefix = f"yolo-edge {command}" if command else "yolo-edge"
    if isinstance(e, KeyboardInterrupt):
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    if isinstance(e, YoloEdgeError):
        if debug:
            traceback.print_exception(type(e), e, e.__traceback__)
        print(f"{prefix}: error: {one_line(e)}", file=sys.stderr)
        return 1
    if isinstance(e, OSError) and not isinstance(e, (ConnectionError, BlockingIOError)):
        if debug:
            traceback.print_exception(type(e), e, e.__traceback__)
        print(f"{prefix}: error: {one_line(_os_error(e))}", file=sys.stderr)
        return 1
    if debug:
        traceback.print_exception(type(e), e, e.__traceback__)
        hint = "the traceback is above; please report it"
    else:
        hint = f"rerun with --debug (or {DEBUG_ENV}=1) for the traceback, and please report it"
    print(f"{prefix}: internal error: {type(e).__name__}: {one_line(e) or '(no message)'} — {hint}",
          file=sys.stderr)
    return 1


class OneLineParser(argparse.ArgumentParser):
    """argparse with a one-line usage error: ``yolo-edge CMD: error: MESSAGE (see: yolo-edge CMD --help)``, exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see: {self.prog} --help)\n")
