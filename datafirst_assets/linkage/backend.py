"""The one place that builds Splink's database API (the execution backend).

Every other linkage function takes a ``db_api`` argument, so moving from DuckDB to
another backend is a configuration change here, not a change to the models.

    db_api = make_db_api()                                  # in-memory DuckDB, all cores
    db_api = make_db_api("duckdb", memory_limit="16GB", threads=2, temp_directory="/tmp/x")
    db_api = make_db_api("spark", spark_session=spark)      # extension point (not yet built)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BACKENDS = ("duckdb", "spark")


class BackendNotAvailable(NotImplementedError):
    """The requested Splink backend is not wired up (yet) in this project."""


def make_db_api(backend: str = "duckdb", **options: Any):
    """Build a Splink DB API for ``backend``.

    duckdb options (all optional):
      connection       ":memory:" (default), a database path, or a ``duckdb.DuckDBPyConnection``
      memory_limit     e.g. "16GB" (DuckDB's default is 80% of RAM)
      threads          worker threads (DuckDB's default: all cores)
      temp_directory   where DuckDB spills when over the memory limit
      preserve_insertion_order  False lets DuckDB stream big results with less memory
                       (default False: Splink never relies on row order)
      materialisation / materialisation_dir   passed to ``DuckDBAPI`` ("parquet" mode
                       writes intermediate tables to parquet files in that directory)

    spark: raises :class:`BackendNotAvailable`. The later issue that adds Spark fills in
    ``_make_spark`` (``splink.SparkAPI(spark_session=..., ...)``); nothing else changes,
    because settings are built with Splink's dialect-neutral creators.
    """
    backend = backend.lower()
    if backend == "duckdb":
        return _make_duckdb(**options)
    if backend == "spark":
        return _make_spark(**options)
    raise ValueError(f"unknown Splink backend {backend!r}; expected one of {BACKENDS}")


def _make_duckdb(
    connection: Any = ":memory:",
    *,
    memory_limit: str | None = None,
    threads: int | None = None,
    temp_directory: str | Path | None = None,
    preserve_insertion_order: bool = False,
    materialisation: str = "table",
    materialisation_dir: str | Path | None = None,
):
    import duckdb
    from splink import DuckDBAPI

    con = duckdb.connect(connection) if isinstance(connection, (str, Path)) else connection
    settings: list[str] = []
    if memory_limit:
        settings.append(f"SET memory_limit = '{memory_limit}'")
    if threads:
        settings.append(f"SET threads = {int(threads)}")
    if temp_directory:
        Path(temp_directory).mkdir(parents=True, exist_ok=True)
        settings.append(f"SET temp_directory = '{Path(temp_directory).as_posix()}'")
    settings.append(f"SET preserve_insertion_order = {str(bool(preserve_insertion_order)).lower()}")
    for stmt in settings:
        con.execute(stmt)
    kwargs: dict[str, Any] = {}
    if materialisation != "table":
        kwargs = {"materialisation": materialisation, "materialisation_dir": str(materialisation_dir)}
    return DuckDBAPI(connection=con, **kwargs)


def _make_spark(**options: Any):
    raise BackendNotAvailable(
        "The Spark backend is an extension point: implement "
        "datafirst_assets.linkage.backend._make_spark to return "
        "splink.SparkAPI(spark_session=options['spark_session'], ...). "
        "Use backend='duckdb' until then."
    )


def sql_dialect(db_api) -> str:
    """The SQL dialect name of a DB API ("duckdb", "spark", ...)."""
    return db_api.sql_dialect.sql_dialect_str
