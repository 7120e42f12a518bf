"""pandera's polars API (`pa`), loaded without pandas.

pandera's package imports pandas, and its pandas API, whenever pandas is importable (~0.3 s), and
its check dispatch imports pandera's pandas types at the first check of a process. Every contract
of the pipeline is a polars schema (or, for big tables, an Ibis one): nothing validates a pandas
frame. pandas is installed all the same (Ibis needs it to `execute`), so every process that loads
the code location paid for it: the code server, each run's freshly spawned Python and the command
line, three of them on the demo's critical path.

pandera supports installs without pandas (its `pandera[polars]` extra): when importing pandas
raises ModuleNotFoundError, its package loads the polars-only namespace and its check dispatch
falls through to the polars backends (pandera GH #2387). `pa` is pandera.polars imported with
pandas hidden for that moment, and the dispatch asked once then, since it keeps its answer. pandas
stays importable afterwards: what needs it imports it when it runs: pandera's Ibis backend, and
pyarrow's `Table.from_pylist` (Splink's u estimation calls it), so a run that trains a Splink model
still imports pandas, at that step instead of at load. In the demo the saving is the code server's
load (on the critical path before the first run); a run whose steps need no pandas saves it too.
Where pandas is already imported (a test session, a notebook), pandera is imported as usual.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class _PandasHidden(importlib.abc.MetaPathFinder):
    """Makes `import pandas` fail as it fails where pandas is not installed."""

    def find_spec(self, name, path=None, target=None):  # noqa: ARG002 (the finder protocol's signature)
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


@contextmanager
def pandas_hidden() -> Iterator[None]:
    """Within the block, pandas cannot be imported (unless it already was: then nothing changes)."""
    if "pandas" in sys.modules:
        yield
        return
    finder = _PandasHidden()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


with pandas_hidden():
    import pandera.polars as pa
    import polars as pl

    # The check dispatch looks for pandera's pandas types at the first check of a process and keeps
    # what it found: asked now, it finds none (else a run's first contract would import pandas).
    pa.Check.get_backend(pl.LazyFrame())

__all__ = ["pa", "pandas_hidden"]
