"""The one place that builds Splink's database API (the execution backend).

Every other linkage function takes a ``db_api`` argument, and settings are rendered for
the db_api's SQL dialect when a linker is made (``settings.render_spec``), so moving
from DuckDB to Spark is a configuration value here, not a change to the models.

    db_api = make_db_api()                                  # in-memory DuckDB, all cores
    db_api = make_db_api("duckdb", memory_limit="16GB", threads=2, temp_directory="/tmp/x")
    db_api = make_db_api("spark")                           # local[*] Spark session
    db_api = make_db_api("spark", master="spark://head:7077", checkpoint_dir="hdfs:///tmp/splink")
    db_api = make_db_api("spark", spark_session=spark)      # a session you already have
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from datafirst_assets.warehouse.duckdb_settings import duckdb_settings

BACKENDS = ("duckdb", "spark")

#: Environment variables read by :func:`backend_config_from_env` (for ``datafirst run``,
#: ``make demo`` and ``dagster dev``, which build the resources without run config).
BACKEND_ENV = "DATAFIRST_LINKAGE_BACKEND"
SPARK_MASTER_ENV = "DATAFIRST_SPARK_MASTER"

#: Spark settings for a session this module starts itself (``conf`` overrides them).
_SPARK_CONF = {
    "spark.ui.showConsoleProgress": "false",  # progress bars would flood Dagster's logs
    "spark.sql.adaptive.enabled": "true",
}


class BackendNotAvailable(RuntimeError):
    """The requested Splink backend cannot run here (e.g. pyspark or Java is missing)."""


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

    spark options (all optional):
      spark_session    an existing ``SparkSession`` (the others below are then ignored,
                       except checkpoint_dir and break_lineage_method)
      master           "local[*]" (default), "local[2]", "spark://host:7077", "yarn", ...
      conf             extra Spark settings, e.g. {"spark.executor.memory": "8g"}
      checkpoint_dir   where Splink writes intermediate tables (break_lineage_method
                       "parquet"): must be shared storage on a cluster (HDFS, S3...);
                       default a fresh local temporary folder
      break_lineage_method  Splink's: "parquet" (default), "persist", "checkpoint", ...
      num_partitions_on_repartition  Splink's repartitioning of big intermediate tables
    """
    backend = backend.lower()
    if backend == "duckdb":
        return _make_duckdb(**options)
    if backend == "spark":
        return _make_spark(**options)
    raise ValueError(f"unknown Splink backend {backend!r}; expected one of {BACKENDS}")


def configured_db_api(backend: str = "duckdb", *, spark_master: str = "local[*]",
                      spark_conf: Mapping[str, str] | None = None, spark_checkpoint_dir: str | None = None,
                      warehouse: str | Path | None = None):
    """:func:`make_db_api` from the configuration values of ``LinkageSettings``.

    DuckDB with a ``warehouse``: Splink runs inside the warehouse's database instance
    (:func:`warehouse_db_api`), else in an in-memory database with the same settings."""
    if backend.lower() == "spark":
        return make_db_api("spark", master=spark_master, conf=spark_conf, checkpoint_dir=spark_checkpoint_dir)
    if backend.lower() == "duckdb" and warehouse:
        return warehouse_db_api(warehouse)
    return make_db_api(backend)


def backend_config_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``LinkageSettings`` fields set in the environment (only those that are set)."""
    env = os.environ if env is None else env
    out = {}
    if env.get(BACKEND_ENV):
        out["backend"] = env[BACKEND_ENV].strip().lower()
    if env.get(SPARK_MASTER_ENV):
        out["spark_master"] = env[SPARK_MASTER_ENV].strip()
    return out


def warehouse_db_api(database: str | Path):
    """Splink's DuckDB backend inside the warehouse's own database instance.

    Splink's working tables go to a private in-memory catalog attached for this DB API (and
    detached when it is garbage-collected), while stored tables are readable by their full
    name (``<warehouse>.<schema>.<table>``), so records reach Splink and pairs reach the
    warehouse without passing through Python. One instance means one memory limit, one
    thread pool and one spill folder for the warehouse and Splink (``duckdb_settings.py``).
    """
    import secrets
    import weakref

    from splink import DuckDBAPI

    from datafirst_assets.warehouse.connection import open_warehouse

    cursor = open_warehouse(database).cursor()
    scratch = f"splink_{secrets.token_hex(4)}"
    cursor.execute(f"ATTACH ':memory:' AS {scratch}")
    cursor.execute(f"USE {scratch}")
    db_api = DuckDBAPI(connection=cursor)
    db_api.scratch_catalog = scratch
    db_api.release_scratch = weakref.finalize(db_api, _detach_scratch, database, cursor, scratch)
    return db_api


def release_db_api(db_api) -> None:
    """Drop everything Splink built in a warehouse DB API's scratch catalog, now, rather than
    when the DB API is garbage-collected: something in Dagster or Splink can keep it alive to
    the end of the run (measured: one catalog left attached per `clusters` step, holding that
    dataset's records and working tables in memory). The DB API must not be used afterwards.
    Other backends: nothing to do."""
    release = getattr(db_api, "release_scratch", None)
    if release is not None:
        release()  # a weakref.finalize runs once: the garbage collector will not run it again


def _detach_scratch(database: str | Path, cursor, scratch: str) -> None:
    """Drop a DB API's scratch catalog (finaliser: never raises)."""
    from datafirst_assets.warehouse.connection import open_database_or_none

    try:
        cursor.close()
        connection = open_database_or_none(database)
        if connection is not None:
            connection.cursor().execute(f"DETACH DATABASE IF EXISTS {scratch}")
    except Exception:  # noqa: BLE001 - the database may already be closed at exit
        pass


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
    if memory_limit is None and threads is None and temp_directory is None:
        # Nothing given: the project's settings (duckdb_settings.py), not DuckDB's defaults.
        defaults = duckdb_settings()
        memory_limit, threads, temp_directory = defaults.memory_limit, defaults.threads, defaults.temp_directory
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


# ------------------------------------------------------------------------------ spark


def spark_unavailable_reason() -> str | None:
    """Why the Spark backend cannot start on this machine, or None when it can."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install -e '.[spark]')"
    java_home = os.environ.get("JAVA_HOME")
    if not (shutil.which("java") or (java_home and Path(java_home, "bin", "java").exists())):
        return "no Java runtime found (pyspark 4 needs Java 17 or later on the PATH or in JAVA_HOME)"
    return None


def start_spark_session(master: str = "local[*]", *, conf: Mapping[str, str] | None = None,
                        app_name: str = "datafirst-linkage"):
    """A Spark session with Splink's similarity functions (jaro_winkler...) on the classpath.

    Returns the running session when there is one (Spark allows one per process; its
    master cannot change), else starts one on ``master``.
    """
    reason = spark_unavailable_reason()
    if reason:
        raise BackendNotAvailable(f"Splink's Spark backend is not available: {reason}")
    from pyspark.sql import SparkSession
    from splink.backends.spark import similarity_jar_location

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.master(master).appName(app_name).config("spark.jars", similarity_jar_location())
    settings = dict(_SPARK_CONF)
    if master.startswith("local"):
        # Splink runs many small SQL steps and Spark's default of 200 shuffle partitions makes
        # each slow on one machine: one partition per core (a cluster keeps its own settings).
        # No web UI: several sessions on one machine would fight over port 4040.
        cores = master[len("local["):-1] if master.startswith("local[") else "1"
        n = (os.cpu_count() or 2) if cores == "*" else int(cores.split(",")[0])
        settings |= {"spark.sql.shuffle.partitions": str(n), "spark.default.parallelism": str(n),
                     "spark.ui.enabled": "false"}
    for key, value in {**settings, **dict(conf or {})}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _make_spark(
    *,
    spark_session: Any = None,
    master: str = "local[*]",
    conf: Mapping[str, str] | None = None,
    checkpoint_dir: str | None = None,
    break_lineage_method: str = "parquet",
    num_partitions_on_repartition: int | None = None,
):
    session = spark_session or start_spark_session(master, conf=conf)
    from splink import SparkAPI

    if break_lineage_method in ("parquet", "checkpoint"):
        context = session.sparkContext
        if checkpoint_dir:
            context.setCheckpointDir(str(checkpoint_dir))
        elif context.getCheckpointDir() is None:
            folder = tempfile.mkdtemp(prefix="datafirst_spark_checkpoints_")
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            context.setCheckpointDir(folder)
    return SparkAPI(spark_session=session, break_lineage_method=break_lineage_method,
                    num_partitions_on_repartition=num_partitions_on_repartition)


def sql_dialect(db_api) -> str:
    """The SQL dialect name of a DB API ("duckdb", "spark", ...)."""
    return db_api.sql_dialect.sql_dialect_str


# ------------------------------------------------------------------ parquet hand-offs


def write_parquet(db_api, sdf, path: str | Path, columns: list[str] | None = None) -> Path:
    """Write a SplinkDataFrame (or some of its columns) to one Parquet file/folder
    without passing through Python, so a big result never has to fit in memory twice."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ", ".join(columns) if columns else "*"
    if sql_dialect(db_api) == "spark":
        db_api.spark.sql(f"select {cols} from {sdf.physical_name}").write.mode("overwrite").parquet(str(path))
    else:
        db_api._con.execute(
            f"COPY (select {cols} from {sdf.physical_name}) TO '{path.as_posix()}' (FORMAT parquet)")
    return path


def parquet_table(db_api, paths: list[str | Path], templated_name: str = "__splink__df_predict"):
    """A SplinkDataFrame reading Parquet files in place (a view, nothing loaded up front).
    Drop it with :func:`drop_parquet_table`."""
    import secrets

    name = f"__datafirst_parquet_{secrets.token_hex(4)}"
    if sql_dialect(db_api) == "spark":
        db_api.spark.read.parquet(*[str(p) for p in paths]).createOrReplaceTempView(name)
    else:
        files = ", ".join(f"'{Path(p).as_posix()}'" for p in paths)
        db_api._con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{files}])")
    return db_api.table_to_splink_dataframe(templated_name, name)


def drop_parquet_table(db_api, sdf) -> None:
    if sql_dialect(db_api) == "spark":
        db_api.spark.catalog.dropTempView(sdf.physical_name)
    else:
        db_api._con.execute(f"DROP VIEW IF EXISTS {sdf.physical_name}")
