"""User-facing errors: the CLI prints them as one line and exits 2, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (data, model name, checkpoint, output dir): message names the culprit in one line."""


class NonFiniteLossError(UserError):
    """Loss became NaN/inf; training stopped and the last good checkpoint was left as it was."""


def one_line(exc: BaseException) -> str:
    """A single line for an exception; errors re-raised from DataLoader workers carry a traceback."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    line = lines[-1]
    # a worker's re-raise ends with "module.ClassName: message"; drop the class path
    head, sep, tail = line.partition(": ")
    if sep and head.rsplit(".", 1)[-1].endswith(("Error", "Exception")) and " " not in head:
        line = tail
    return line
