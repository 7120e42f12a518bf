"""`datafirst` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Only light modules here: `datafirst demo` starts its code server before anything heavy is imported
# (main), and the parser's imports (polars, the simulator, linkage) come after, in build_parser.
from datafirst_assets.layout import DataLayout, default_data_dir
from datafirst_assets.sources.registry import SOURCES


def _cmd_simulate(args: argparse.Namespace) -> int:
    from datafirst_assets.evaluation.truth import default_truth_dir
    from datafirst_assets.simulate import simulate
    from datafirst_assets.simulate.config import SimulationConfig

    out = Path(args.out)
    truth = Path(args.truth) if args.truth else default_truth_dir()
    summary = simulate(people=args.people, seed=args.seed, extracts=args.extracts, out=out, truth_out=truth,
                       config=SimulationConfig.for_difficulty(args.difficulty), malformed_rate=args.malformed_rate,
                       extract_interval_days=getattr(args, "extract_interval_days", 30))
    print(f"Simulated {args.people:,} people (seed {args.seed}, {args.difficulty}) -> {summary['total_records']:,} records in "
          f"{args.extracts} deliveries per system under {out}; truth in {truth}")
    if summary["malformed_rows"]:
        faults = ", ".join(f"{n:,} {fault.replace('_', ' ')}" for fault, n in summary["malformed_rows"].items())
        print(f"Malformed rows written on purpose (--malformed-rate {args.malformed_rate}): {faults}")
    return 0


def _cmd_simulate_review(args: argparse.Namespace) -> int:
    import polars as pl

    from datafirst_assets.evaluation.reviewer import merge_labels, simulated_labels
    from datafirst_assets.evaluation.truth import missing_truth, record_truth
    from datafirst_assets.warehouse.connection import warehouse_cursor
    from datafirst_assets.warehouse.content import table_columns

    layout, truth_dir = DataLayout(args.data_dir), Path(args.truth_dir)
    problem = missing_truth(truth_dir)
    if problem:
        print(f"datafirst simulate-review: {problem}", file=sys.stderr)
        return 1
    for source in args.source or sorted(SOURCES):
        with warehouse_cursor(layout.warehouse) as conn:
            if not table_columns(conn, f"linkage_{source}", "review_queue"):
                print(f"datafirst simulate-review: no review queue for {source} in {layout.warehouse}: "
                      "run `datafirst run` first", file=sys.stderr)
                return 1
            queue = pl.from_arrow(conn.sql(f"select * from linkage_{source}.review_queue").to_arrow_table())
        labels = simulated_labels(queue, record_truth(truth_dir, source), pairs=args.pairs,
                                  error_rate=args.error_rate, seed=args.seed)
        path = layout.root / "labels" / f"{source}.csv"
        merged = merge_labels(path, labels)
        path.parent.mkdir(parents=True, exist_ok=True)
        merged.write_csv(path)
        print(f"{source}: labelled {labels.height:,} pairs ({int(labels['clerical_match_score'].sum()):,} matches, "
              f"{args.error_rate:.1%} labelled wrongly on purpose); {merged.height:,} labels in {path}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    return _run(DataLayout(args.data_dir), args.date or None, link=args.link, command="run",
                ingest=not args.link_only, review_queues_only=args.review_queues_only)


def _cmd_backfill(args: argparse.Namespace) -> int:
    from datafirst_assets.runner import extract_dates_between

    layout = DataLayout(args.data_dir)
    dates = extract_dates_between(layout.landing, args.start, args.end)
    if not dates:
        print(f"datafirst backfill: no deliveries dated {args.start}..{args.end} under {layout.landing}",
              file=sys.stderr)
        return 1
    print(f"Backfilling {len(dates)} extract date(s) {dates[0]}..{dates[-1]}")
    return _run(layout, dates, link=args.link, command="backfill")


def _instance():
    """The instance of DAGSTER_HOME, or an ephemeral one when it is not set."""
    from dagster import DagsterInstance

    return DagsterInstance.get() if _has_dagster_home() else DagsterInstance.ephemeral()


def _cmd_demo(args: argparse.Namespace) -> int:
    """`make demo`'s four commands in this one process: simulate; run --review-queues-only;
    simulate-review; run --link-only. One start of the command line (imports, the asset graph) and,
    when runs are launched through the code location, one code server for both runs (the ingest with
    the review queues, then the link), started before the simulation so that its loading of the code
    location overlaps it (two cores)."""
    from datafirst_assets.code_location_server import code_server
    from datafirst_assets.evaluation.reviewer import DEFAULT_ERROR_RATE, DEFAULT_PAIRS
    from datafirst_assets.evaluation.truth import default_truth_dir

    layout = DataLayout(args.data_dir)
    truth = Path(args.truth) if args.truth else default_truth_dir()
    server = _start_demo_code_server(args.data_dir)  # started by main already: the same server
    print("[1/4] datafirst simulate", flush=True)
    status = _cmd_simulate(argparse.Namespace(
        people=args.people, seed=args.seed, extracts=args.extracts, out=str(layout.landing), truth=str(truth),
        difficulty=args.difficulty, malformed_rate=args.malformed_rate))
    if status:
        return status
    import datafirst_assets.runner  # noqa: F401 - Dagster (not the asset graph: the server builds it), while the server loads
    if server is not None:
        import dagster_graphql.cli  # noqa: F401 - what the launches run (~0.7 s), imported while the server loads

        # The server opens the instance as it starts, creating its SQLite storage on a new DAGSTER_HOME;
        # two processes creating it at once leave two schema versions and neither opens it again.
        code_server(server)
    instance = _instance()
    steps = [
        ("run --review-queues-only", lambda: _run(layout, None, link=True, command="demo", instance=instance,
                                                  review_queues_only=True)),
        ("simulate-review", lambda: _simulate_review_then_close(argparse.Namespace(
            data_dir=str(layout.root), truth_dir=str(truth), source=None, pairs=DEFAULT_PAIRS,
            error_rate=DEFAULT_ERROR_RATE, seed=0), layout)),
        ("run --link-only", lambda: _run(layout, None, link=True, command="demo", instance=instance, ingest=False)),
    ]
    for number, (name, step) in enumerate(steps, 2):
        print(f"[{number}/4] datafirst {name}", flush=True)
        status = step()
        if status:
            return status
    return 0


def _start_demo_code_server(data_dir: str) -> dict[str, str] | None:
    """Start `datafirst demo`'s code server (when its runs are launched through the code location)
    without waiting for it to load; its environment, or None. Called first thing in `main`, before
    the parser's imports (~0.5 s), as the code location's loading is what the first run waits for."""
    import os

    from datafirst_assets.code_location_server import LAUNCH_ENV, server_env, start_code_server

    if os.environ.get(LAUNCH_ENV) != "code_location" or not _has_dagster_home():
        return None
    server = server_env(os.environ["DAGSTER_HOME"], DataLayout(data_dir).root)
    start_code_server(server)
    return server


def _demo_data_dir(argv: list[str]) -> str:
    """`datafirst demo`'s --data-dir, read before the parser is built (same default)."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--data-dir", default=str(default_data_dir()))
    return early.parse_known_args(argv)[0].data_dir


def _simulate_review_then_close(args: argparse.Namespace, layout: DataLayout) -> int:
    from datafirst_assets.warehouse.connection import close_warehouse

    try:
        return _cmd_simulate_review(args)
    finally:
        close_warehouse(layout.warehouse)  # the link run's process writes the warehouse next (one writer)


def _run(layout: DataLayout, dates: list[str] | None, link: bool, command: str, instance=None,
         **options: bool) -> int:
    """Every failure ends with one message in the product's words; tracebacks go to data/logs/."""
    from datafirst_assets.raw.delivery import DeliveryError
    from datafirst_assets.runner import PipelineFailed, format_summary, run_pipeline, wait_for_idle

    def warn(line: str) -> None:
        print(f"datafirst {command}: warning: {line}", file=sys.stderr)

    try:
        instance = instance or _instance()
        if instance.is_persistent:
            wait_for_idle(instance)
        report = run_pipeline(layout, instance, dates=dates, link=link, warn=warn, **options)
        if options.get("review_queues_only"):
            print(f"Linked each dataset and built its clerical review queue in {report.seconds:.1f}s: "
                  f"{(layout.root / 'review').resolve()}/<source>.csv to fill in, saved as "
                  f"{(layout.root / 'labels').resolve()}/<source>.csv")
        else:
            print(format_summary(layout, report))
    except (PipelineFailed, DeliveryError) as error:
        print(f"datafirst {command} failed: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - anything else still ends with a message, not a traceback
        log = _log_traceback(layout, command)
        print(f"datafirst {command} failed: {type(error).__name__}: {error} (traceback: {log}). If the "
              "message does not say what to fix, report it with the traceback.", file=sys.stderr)
        return 1
    return 0


def _log_traceback(layout: DataLayout, command: str) -> Path:
    import datetime
    import traceback

    layout.logs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    log = layout.logs / f"datafirst-{command}-{stamp}.log"
    log.write_text(traceback.format_exc())
    return log


def _iso_date(text: str) -> str:
    import datetime

    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD date") from error


def _has_dagster_home() -> bool:
    import os

    return bool(os.environ.get("DAGSTER_HOME"))


def _cmd_export_linkage(args: argparse.Namespace) -> int:
    import polars as pl

    from datafirst_assets.warehouse.connection import warehouse_cursor

    layout = DataLayout(args.data_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with warehouse_cursor(layout.warehouse) as conn:
        for table in ("person_records", "scored_pairs", "clusters"):
            frame = pl.from_arrow(conn.sql(f"select * from linkage_{args.source}.{table}").to_arrow_table())
            frame.write_parquet(out / f"{table}.parquet")
            print(f"{out / f'{table}.parquet'}: {frame.height:,} rows")
    return 0


def _cmd_release_sql(args: argparse.Namespace) -> int:
    import duckdb

    from datafirst_assets.release import open_release, read_manifest, release_path

    try:
        releases = DataLayout(args.data_dir).releases
        path = Path(args.release) if args.release else release_path(releases, args.kind)
        manifest = read_manifest(path)
        con = open_release(path)
    except (FileNotFoundError, ValueError) as error:
        print(f"datafirst release-sql: {error}", file=sys.stderr)
        return 1
    print(f"release {manifest['release_id']} ({manifest['kind']}) at {path}", file=sys.stderr)
    try:
        result = con.sql(args.sql)
        if result is None:
            return 0
        if args.csv:
            sys.stdout.write(result.pl().write_csv())
        else:
            result.show(max_rows=args.max_rows, max_width=10_000)
    except duckdb.Error as error:
        print(f"datafirst release-sql: {error}", file=sys.stderr)
        return 1
    finally:
        con.close()
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    from datafirst_assets.ui import run_ui

    return run_ui(Path(args.data_dir), host=args.host, port=args.port, files_port=args.files_port)


def build_parser() -> argparse.ArgumentParser:
    from datafirst_assets.evaluation.reviewer import DEFAULT_ERROR_RATE, DEFAULT_PAIRS
    from datafirst_assets.linkage.dedupe_cli import add_dedupe_parser, add_evaluate_parser, add_review_sample_parser
    from datafirst_assets.simulate.config import DIFFICULTIES

    parser = argparse.ArgumentParser(prog="datafirst", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="simulate extract deliveries from the seven source systems")
    sim.add_argument("--people", type=int, default=20_000)
    sim.add_argument("--seed", type=int, default=42)
    sim.add_argument("--extracts", type=int, default=3, help="deliveries per system")
    sim.add_argument("--extract-interval-days", type=int, default=30, metavar="DAYS",
                     help="days between deliveries (default 30: each later delivery adds about 0.4%% of the "
                     "records; 90: about 1%%)")
    sim.add_argument("--out", default=str(default_data_dir() / "landing"), help="landing folder")
    sim.add_argument("--truth", default=None,
                     help="truth folder, kept outside the pipeline's data (default: $DATAFIRST_TRUTH_DIR "
                     "or evaluation/truth)")
    sim.add_argument("--difficulty", choices=DIFFICULTIES, default="standard",
                     help="hard: twice the identifier error and missing rates, more people sharing common names")
    sim.add_argument("--malformed-rate", type=float, default=0.0, metavar="R",
                     help="share of rows of each leaf table written malformed (bad dates, stray delimiters, "
                     "junk codes, overlong fields, control characters), for ingest to quarantine; default 0")
    sim.set_defaults(func=_cmd_simulate)

    demo = sub.add_parser(
        "demo", help="what `make demo` does, in one process: simulate, run --review-queues-only, simulate-review, "
        "run --link-only (one code server for all their runs with DATAFIRST_LAUNCH=code_location)")
    demo.add_argument("--people", type=int, default=10_000)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--extracts", type=int, default=3, help="deliveries per system")
    demo.add_argument("--difficulty", choices=DIFFICULTIES, default="standard")
    demo.add_argument("--malformed-rate", type=float, default=0.002, metavar="R")
    demo.add_argument("--data-dir", default=str(default_data_dir()))
    demo.add_argument("--truth", default=None, help="truth folder (default: $DATAFIRST_TRUTH_DIR or evaluation/truth)")
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser("run", help="materialise every asset headless for the deliveries in the landing zone")
    run.add_argument("--data-dir", default=str(default_data_dir()))
    run.add_argument("--date", action="append", help="only this extract date (repeatable)")
    run.add_argument("--no-link", dest="link", action="store_false",
                     help="only load and stage; leave linking to the refresh sensor or a later run")
    run.add_argument("--review-queues-only", action="store_true",
                     help="ingest and link each dataset only as far as its clerical review queue")
    run.add_argument("--link-only", action="store_true",
                     help="skip the ingest: re-link and publish what is staged (e.g. after new clerical labels)")
    run.set_defaults(func=_cmd_run)

    backfill = sub.add_parser(
        "backfill",
        help="re-load every extract dated FROM..TO (inclusive) in one run per range, then link "
        "(re-loading a date replaces its rows)",
    )
    backfill.add_argument("--from", dest="start", required=True, type=_iso_date, metavar="YYYY-MM-DD")
    backfill.add_argument("--to", dest="end", required=True, type=_iso_date, metavar="YYYY-MM-DD")
    backfill.add_argument("--data-dir", default=str(default_data_dir()))
    backfill.add_argument("--no-link", dest="link", action="store_false",
                          help="only load and stage; leave linking to the refresh sensor or a later run")
    backfill.set_defaults(func=_cmd_backfill)

    export = sub.add_parser(
        "export-linkage",
        help="write a dataset's person records, scored pairs and clusters to Parquet "
        "(inputs for review-sample and evaluate)",
    )
    export.add_argument("source", choices=sorted(SOURCES))
    export.add_argument("--data-dir", default=str(default_data_dir()))
    export.add_argument("--out", required=True)
    export.set_defaults(func=_cmd_export_linkage)

    release_sql = sub.add_parser(
        "release-sql", help="run SQL on a research release (schemas per dataset, a view per table)")
    which = release_sql.add_mutually_exclusive_group()
    which.add_argument("--release", help="release folder (default: the latest release of --kind)")
    which.add_argument("--kind", choices=("deidentified", "synthetic"), default="deidentified")
    release_sql.add_argument("--data-dir", default=str(default_data_dir()))
    release_sql.add_argument("--csv", action="store_true", help="print the whole result as CSV")
    release_sql.add_argument("--max-rows", type=int, default=40, help="rows shown in the table view")
    release_sql.add_argument("sql")
    release_sql.set_defaults(func=_cmd_release_sql)

    review = sub.add_parser(
        "simulate-review",
        help="a simulated clerical reviewer: label each dataset's review queue from the simulator's truth, "
        "with mistakes, into data/labels/<source>.csv (where people's labels go)")
    review.add_argument("--data-dir", default=str(default_data_dir()))
    review.add_argument("--truth-dir", default=None, help="default: $DATAFIRST_TRUTH_DIR or evaluation/truth")
    review.add_argument("--source", action="append", choices=sorted(SOURCES), help="only this dataset (repeatable)")
    review.add_argument("--pairs", type=int, default=DEFAULT_PAIRS, help="pairs labelled per dataset")
    review.add_argument("--error-rate", type=float, default=DEFAULT_ERROR_RATE, help="share of labels wrong")
    review.add_argument("--seed", type=int, default=0)
    review.set_defaults(func=_cmd_simulate_review)

    ui = sub.add_parser("ui", help="the Dagster UI (dagster dev) and a local server for the reports and charts")
    ui.add_argument("--data-dir", default=str(default_data_dir()))
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--files-port", type=int, default=3001, help="port of the reports and charts")
    ui.set_defaults(func=_cmd_ui)

    add_dedupe_parser(sub)
    add_review_sample_parser(sub)
    add_evaluate_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"] and not {"-h", "--help"} & set(argv):
        _start_demo_code_server(_demo_data_dir(argv[1:]))
    args = build_parser().parse_args(argv)
    if getattr(args, "truth_dir", "unset") is None:
        from datafirst_assets.evaluation.truth import default_truth_dir

        args.truth_dir = str(default_truth_dir())
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
