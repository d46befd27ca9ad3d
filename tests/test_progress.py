"""Progress of long steps: a bar on a terminal, whole lines at intervals in a log file."""

from __future__ import annotations

import io

from spdnn.progress import _Lines, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_gets_whole_lines_at_intervals():
    log = io.StringIO()
    with progress(total=120, desc="convert neuron4096 layers", unit="layer", file=log, interval=3600) as bar:
        for _ in range(120):
            bar.update(1)
    text = log.getvalue()
    assert "\r" not in text
    # the start and the end only: no line more often than the interval
    assert text.splitlines()[0].startswith("convert neuron4096 layers:   0% 0/120")
    assert text.splitlines()[1].startswith("convert neuron4096 layers: 100% 120/120") and len(text.splitlines()) == 2


def test_every_interval_a_line_and_unknown_totals():
    log = io.StringIO()
    bar = progress(desc="neuron1024.tar.gz", unit="B", unit_scale=True, file=log, interval=0, leave=False)
    bar.reset(total=2048)
    bar.update(1024)
    bar.update(1024)
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 4 and "100%" in lines[-1]


def test_terminal_keeps_the_bar_and_disable_is_silent():
    assert not isinstance(progress(total=3, file=Terminal()), _Lines)
    quiet = io.StringIO()
    bar = progress(total=3, file=quiet, disable=True)
    bar.update(3)
    bar.close()
    assert quiet.getvalue() == ""
