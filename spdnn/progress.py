"""Progress of long steps: a tqdm bar on a terminal, plain lines at intervals elsewhere.

A bar redraws itself with carriage returns, which a log file (every Snakemake rule writes its
stderr to one) keeps as one long line of fragments. When the stream is not a terminal,
`progress` prints a whole line when it starts, then at most every LOG_INTERVAL seconds while
it advances, and a last one when it ends, e.g.

    convert neuron4096 layers:  33% 40/120 [00:12<00:24, 3.3layer/s]
"""

from __future__ import annotations

import sys

from tqdm import tqdm

LOG_INTERVAL = 10.0  # seconds between progress lines in a log


class _Lines(tqdm):
    """tqdm writing one full line per report instead of redrawing a bar."""

    def display(self, msg=None, pos=None):
        if msg == "":  # tqdm clearing the bar: nothing to clear in a log
            return False
        self.fp.write((self.__str__() if msg is None else msg) + "\n")
        self.fp.flush()
        return True

    def close(self):
        if not self.disable and self.last_print_n != self.n:
            self.display()  # where it ended
        self.leave = False  # the last line stays; no bar to clear or end
        super().close()


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress(
    iterable=None,
    *,
    desc: str = "",
    total=None,
    unit: str = "it",
    disable: bool = False,
    file=None,
    interval: float = LOG_INTERVAL,
    **kwargs,
) -> tqdm:
    """A tqdm bar (same arguments, same methods) on a terminal; on any other stream (a log
    file) one plain line at the start, at most every `interval` seconds, and at the end."""
    stream = sys.stderr if file is None else file
    if disable or _is_terminal(stream):
        return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, file=stream, **kwargs)
    kwargs.pop("leave", None)
    return _Lines(
        iterable, desc=desc, total=total, unit=unit, file=stream, ncols=0, mininterval=interval, miniters=1, **kwargs
    )
