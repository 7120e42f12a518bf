"""DuckDB's resources, set in one place: memory limit, threads and where it spills.

Every DuckDB database the pipeline opens for real work (the warehouse, and Splink's DuckDB
backend, which runs inside the warehouse's database instance: see ``linkage/backend.py``)
takes these settings, so a machine spills to disk instead of running out of memory.

    DATAFIRST_DUCKDB_MEMORY_LIMIT   e.g. "8GB" (default: 60% of this machine's memory)
    DATAFIRST_DUCKDB_THREADS        worker threads (default: DuckDB's, every core)
    DATAFIRST_DUCKDB_TEMP_DIR       spill folder (default: <data dir>/tmp/duckdb, /tmp/datafirst/...
                                    for the dedupe command, which has no data dir)
    DATAFIRST_DUCKDB_CHECKPOINT_THRESHOLD
                                    write-ahead log size at which a commit also checkpoints
                                    (default 1GB; DuckDB's own is 16MB)

Why the checkpoint threshold: every step's write is its own transaction, and with DuckDB's
16MB a commit every few steps also checkpointed the whole database file (written and synced),
7 commits of over 50 ms in `make demo`'s 250 table writes. At 1GB the log is checkpointed when the
process closes the warehouse, or by a write bigger than that. A commit still syncs the log, so a
committed write survives the process dying (the log is replayed at the next open).

DuckDB's own default memory limit is 80% of RAM, which on a shared machine is more than the
process can have; and its default spill folder sits beside the database file only for file
databases, not for the in-memory ones Splink uses.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb

MEMORY_LIMIT_ENV = "DATAFIRST_DUCKDB_MEMORY_LIMIT"
THREADS_ENV = "DATAFIRST_DUCKDB_THREADS"
TEMP_DIR_ENV = "DATAFIRST_DUCKDB_TEMP_DIR"
CHECKPOINT_THRESHOLD_ENV = "DATAFIRST_DUCKDB_CHECKPOINT_THRESHOLD"
DEFAULT_CHECKPOINT_THRESHOLD = "1GB"
#: Share of the machine's memory DuckDB may use when no limit is set: leaves room for the
#: Python side of a step (polars frames, Dagster) within what the machine has.
DEFAULT_MEMORY_FRACTION = 0.6


def machine_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_memory_limit(fraction: float = DEFAULT_MEMORY_FRACTION) -> str:
    return f"{max(1, int(machine_memory_bytes() * fraction / 2**30))}GB"


@dataclass(frozen=True)
class DuckDBSettings:
    memory_limit: str
    temp_directory: str
    threads: int | None = None
    checkpoint_threshold: str = DEFAULT_CHECKPOINT_THRESHOLD

    def config(self) -> dict[str, str | int]:
        """For ``duckdb.connect(config=...)``; creates the spill folder."""
        Path(self.temp_directory).mkdir(parents=True, exist_ok=True)
        out: dict[str, str | int] = {"memory_limit": self.memory_limit, "temp_directory": self.temp_directory,
                                     # Nothing here relies on row order; without it DuckDB streams
                                     # big results with less memory.
                                     "preserve_insertion_order": "false",
                                     # DuckDB's allocator returns freed memory to the system in the
                                     # background. Without it, memory DuckDB allocated and Python freed
                                     # later (Arrow results read into polars frames) stayed resident:
                                     # measured 2.1 against 1.0 GiB after one large query read into Arrow.
                                     "allocator_background_threads": "true"}
        if self.threads:
            out["threads"] = self.threads
        out["checkpoint_threshold"] = self.checkpoint_threshold
        return out

    def apply(self, connection: duckdb.DuckDBPyConnection) -> None:
        """Set these on an open database (affects every connection to it)."""
        for key, value in self.config().items():
            connection.execute(f"SET {key} = '{value}'" if isinstance(value, str) else f"SET {key} = {value}")


def duckdb_settings(data_dir: str | Path | None = None, env: Mapping[str, str] | None = None) -> DuckDBSettings:
    """Settings from the environment, with defaults for the rest (spill folder under ``data_dir``)."""
    env = os.environ if env is None else env
    if data_dir is None:
        # No data folder (e.g. `datafirst dedupe`): the data dir if one is configured, else /tmp.
        data_dir = env.get("DATAFIRST_DATA_DIR") or Path(tempfile.gettempdir()) / "datafirst"
    root = Path(data_dir)
    threads = env.get(THREADS_ENV, "").strip()
    if threads and not threads.isdigit():
        raise ValueError(f"{THREADS_ENV} must be a whole number of threads, not {threads!r}")
    return DuckDBSettings(
        memory_limit=env.get(MEMORY_LIMIT_ENV, "").strip() or default_memory_limit(),
        temp_directory=env.get(TEMP_DIR_ENV, "").strip() or str((root / "tmp" / "duckdb").resolve()),
        threads=int(threads) if threads else None,
        checkpoint_threshold=env.get(CHECKPOINT_THRESHOLD_ENV, "").strip() or DEFAULT_CHECKPOINT_THRESHOLD,
    )
