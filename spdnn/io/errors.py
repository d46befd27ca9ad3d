"""The one error type for bad input data: it names the file, the line and the problem."""

from __future__ import annotations


class DataError(ValueError):
    """Raised for malformed challenge data; `str()` reads `file:line: problem`."""

    def __init__(self, source: str, line: int | None, problem: str):
        self.source, self.line, self.problem = source, line, problem
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {problem}")
