"""Saying an error in one line: what a person reads, not what a library dumped."""

from __future__ import annotations


def first_line(error: BaseException, limit: int = 200) -> str:
    """The gist of an exception: torch's messages run to kilobytes (every missing key, the
    whole unpickler allow-list); a person needs the first line."""
    text = str(error).strip()
    text = text.splitlines()[0] if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class WorkbenchError(Exception):
    """What the workbench says to a person: a message that names the file, the field or the
    value and what to do, never a traceback. Every error of ours derives from it (each also
    from the builtin it refines: ValueError for bad input, RuntimeError, OSError), so a page
    or a command catches `WorkbenchError` (and OSError) at its one boundary."""


class CheckpointError(WorkbenchError, RuntimeError):
    """A checkpoint that cannot be used (unreadable, damaged, another model's); raised while
    loading, before anything of the run has changed. Here, not beside the checkpoint code,
    so that torch-free modules (the run store) can tell it apart."""
