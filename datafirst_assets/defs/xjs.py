"""Cross-justice person lookup and the magistrates'-to-Crown Court case link, with their quality.

linkage/<source>/person_records + clusters (all sources) -> linkage/xjs/lookup (+ linkage/xjs/edges)
linked hocas + xhibit + lookup                           -> linkage/criminal_courts/case_lookup
(their accuracy against the simulator's truth: evaluation/xjs, in defs/evaluation.py)

No `from __future__ import annotations`: Dagster inspects annotations at runtime.
"""

import json
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    MetadataValue,
    Output,
    asset,
    multi_asset,
)

from datafirst_assets.common.folders import write_text_atomically
from datafirst_assets.common.tables import bullet_list
from datafirst_assets.defs.linkage import LinkageSettings, history_output, linkage_key, linkage_table, stored_table
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.deidentify.keys import key_fingerprint, key_is_development, keyed_hash
from datafirst_assets.linkage.backend import release_db_api
from datafirst_assets.linkage.case_link import HOCAS_COLUMNS, PERSON_LINK_SOURCES, XHIBIT_COLUMNS, build_case_link
from datafirst_assets.linkage.incremental import model_to_reuse
from datafirst_assets.linkage.stable_ids import run_history_rows
from datafirst_assets.linkage.xjs import (
    DEFAULT_THRESHOLDS,
    XJS_CHANGE_SCHEMA,
    XJS_HISTORY_SCHEMA,
    XjsResult,
    link_variants,
    carry_forward_xjs_ids,
    check_lookup_invariants,
    unchanged_xjs_persons_kept,
    xjs_change_counts,
    xjs_id_change_history,
)
from datafirst_assets.linkage.xjs_incremental import (
    DIGESTS_TABLE,
    STATE_SCHEMA,
    PERSON,
    STATE_MARKER,
    PreviousXjs,
    RecordsAndPersons,
    StoredCarry,
    attach_scratch,
    carry_forward_stored,
    changed_rows,
    clear_state_marker,
    detach_scratch,
    lookup_problems,
    mark_state,
    state_marked,
    store_digests,
    stored_digests,
    stored_lookup_usable,
)
from datafirst_assets.linkage.xjs_inputs import lookup_inputs
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.content import VALIDATED_CONTENT, content_sums, table_columns
from datafirst_assets.warehouse.io_manager import ChangedRows, StoredTable, WarehouseQuery
from datafirst_assets.warehouse.unchanged import (
    FINGERPRINT,
    inputs_fingerprint,
    kept_if_unchanged,
    latest_metadata,
    recorded_inputs_fingerprint,
)
from datafirst_assets.sources.registry import SOURCES

LOOKUP = AssetKey(["linkage", "xjs", "lookup"])
EDGES = AssetKey(["linkage", "xjs", "edges"])
XJS_ID_CHANGES = AssetKey(["linkage", "xjs", "id_changes"])
XJS_PERSONS = AssetKey(["linkage", "xjs", "persons"])
CASE_LOOKUP = AssetKey(["linkage", "criminal_courts", "case_lookup"])
# (high, medium, low) match probabilities the lookup is cut at; the evaluation reports them
XJS_THRESHOLDS = DEFAULT_THRESHOLDS


def xjs_model_file(linkage: LinkageSettings) -> Path:
    """The cross-justice model the last run trained or reused (incremental runs reuse it while it fits)."""
    return linkage.root / "models" / "xjs" / "current.json"


def read_xjs_model(path: Path) -> tuple[dict, int] | None:
    if not path.exists():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    return doc["model"], int(doc["trained_on_variants"])


def save_xjs_model(path: Path, result: XjsResult) -> None:
    if result.model is None:
        return
    previous = read_xjs_model(path)
    reused = "reused" in result.model.timings and previous is not None
    trained_on = previous[1] if reused else int(result.stats["variants"])
    write_text_atomically(path, json.dumps({"model": result.model.to_json(), "trained_on_variants": trained_on}))


def state_marker_table(warehouse: Warehouse) -> str:
    """The state marker's table (``xjs_incremental.STATE_MARKER``), beside the persons and edges."""
    return linkage_table(warehouse.database, "xjs", STATE_MARKER).name


def previous_xjs(warehouse: Warehouse) -> PreviousXjs:
    """The persons state and edges the last lookup stored (either may be missing), and whether the
    state marker says one run stored both."""
    persons, edges = (linkage_table(warehouse.database, "xjs", name).name for name in ("persons", "edges"))
    with warehouse.cursor() as conn:
        marked = state_marked(conn, state_marker_table(warehouse), persons, edges)

    def digests(of: pl.Series) -> pl.DataFrame:
        with warehouse.cursor() as conn:
            return stored_digests(conn, digests_table(warehouse).name, of)

    return PreviousXjs(persons=stored_table(warehouse, "xjs", "persons"), edges=stored_table(warehouse, "xjs", "edges"),
                       marked=marked, digests=digests)


def digests_table(warehouse: Warehouse) -> StoredTable:
    """The persons' variant digests (``xjs_incremental.DIGESTS_TABLE``), beside the persons state."""
    return linkage_table(warehouse.database, "xjs", DIGESTS_TABLE)


def add_record_hashes(lookup: pl.DataFrame, previous: pl.DataFrame | None = None) -> pl.DataFrame:
    """`record_id_hash`: the keyed hash of each record's source id (namespaced by dataset).
    A record the previous lookup stored keeps its stored hash, so an incremental run hashes only
    the new records, as long as the stored hashes are of this key (checked on one stored record
    per dataset: if any differs, every record is hashed again)."""
    stored = _stored_hashes(previous)
    hashed = (lookup.join(stored, on=["source_dataset", "record_id"], how="left") if stored is not None
              else lookup.with_columns(pl.lit(None, dtype=pl.String).alias("record_id_hash")))
    parts = []
    for (source,), part in hashed.group_by("source_dataset", maintain_order=True):
        todo = part.get_column("record_id_hash").is_null().arg_true()
        if todo.len():
            fresh = keyed_hash(part.get_column("record_id").gather(todo), namespace=str(source))
            part = part.with_columns(part.get_column("record_id_hash").scatter(todo, fresh))
        parts.append(part)
    hashed = pl.concat(parts) if parts else hashed
    first = ["source_dataset", "record_id", "record_id_hash"]
    return hashed.select(*first, *[c for c in hashed.columns if c not in first])


def _stored_hashes(previous: pl.DataFrame | None) -> pl.DataFrame | None:
    """source_dataset, record_id, record_id_hash of the previous lookup when its hashes are of
    this run's key (the first stored record of each dataset hashed again agrees), else None."""
    columns = ["source_dataset", "record_id", "record_id_hash"]
    if previous is None or previous.is_empty() or not set(columns) <= set(previous.columns):
        return None
    stored = previous.select(columns).filter(pl.col("record_id_hash").is_not_null())
    probe = stored.group_by("source_dataset").first()
    for source, record_id, digest in probe.iter_rows():
        if keyed_hash(pl.Series([record_id], dtype=pl.String), namespace=source)[0] != digest:
            return None
    return stored


def run_lookup(context: AssetExecutionContext, linkage: LinkageSettings, warehouse: Warehouse,
               tables: dict[str, tuple[StoredTable, StoredTable]], sorted_lookup: bool = True,
               previous: PreviousXjs | None = None, keys_into: str | None = None) -> XjsResult:
    """The lookup from the stored person records and clusters (``tables[source]``), its inputs
    built in the warehouse's DuckDB, with the saved model and the stored edges (``previous``) when
    they can serve (incremental mode); the model is saved for the next run. ``sorted_lookup``: as
    ``link_variants``' (False when the ids are carried in the database, which orders the rows).
    ``keys_into``: a table (in a scratch catalog) for the records' keys, which then stay in the
    database and the result has no lookup frame (``xjs_inputs.lookup_inputs``)."""
    db_api = linkage.db_api()
    saved, incremental = xjs_model_file(linkage), linkage.mode == "incremental"
    saved_model = read_xjs_model(saved) if incremental else None
    try:
        with warehouse.cursor() as conn:  # inputs and clustering in the warehouse's DuckDB (its memory limit and spill folder)
            t = time.perf_counter()
            keys, variants, vmap, hashes = lookup_inputs_for(
                conn, {s: (f"({r.select_sql()})", f"({c.select_sql()})") for s, (r, c) in tables.items()},
                saved_model, linkage.retrain_growth, keys_into=keys_into)
            result = link_variants(keys, variants, vmap, prepared_in=time.perf_counter() - t, variants_hashes=hashes,
                                   thresholds=XJS_THRESHOLDS, db_api=db_api, progress=context.log.info,
                                   connection=conn, retrain_growth=linkage.retrain_growth,
                                   saved_model=saved_model,
                                   previous=previous if incremental else None,
                                   sorted_lookup=sorted_lookup)
    finally:
        release_db_api(db_api)  # Splink's working tables, now rather than whenever it is collected
    save_xjs_model(saved, result)
    return result


def lookup_inputs_for(conn, tables: dict[str, tuple[str, str]], saved_model: tuple[dict, int] | None,
                      retrain_growth: float | None, keys_into: str | None = None) -> tuple:
    """``lookup_inputs`` (with hashes) for a run that reuses ``saved_model`` when it fits: its
    variants numbered as they come when the model will only score (no sort of every variant),
    else in their fields' order, as training needs. Whether it fits is known only from the
    variants, so a saved model that no longer fits (rare: its fields changed, or the variants
    grew past ``retrain_growth``) costs building the inputs again, in order: a retrained model is
    the one a first run would train on the same variants."""
    inputs = lookup_inputs(conn, tables, with_hashes=True, ordered=saved_model is None, keys_into=keys_into)
    if saved_model is not None and model_to_reuse(saved_model[0], saved_model[1], inputs[1],
                                                  retrain_growth=retrain_growth)[0] is None:
        inputs = lookup_inputs(conn, tables, with_hashes=True, ordered=True, keys_into=keys_into)
    return inputs


def stored_record_keys(warehouse: Warehouse, records: dict[str, StoredTable]) -> pl.DataFrame:
    """source_dataset, record_id of every stored person record (what the lookup must cover)."""
    with warehouse.cursor() as conn:
        return pl.from_arrow(conn.sql(_record_keys_sql(records)).to_arrow_table())  # type: ignore[return-value]


def state_outputs(context: AssetExecutionContext, warehouse: Warehouse, result: XjsResult,
                  previous: PreviousXjs | None):
    """The edges, then the persons state; the state marker is cleared before the first write and
    names this run only after the second, so a failure between the two writes leaves a state the
    next run refuses (it then scores every pair), never a mismatched one. Each is written as its
    change to the stored table when the lookup knows which persons it touched (`_state_change`)."""
    marker = state_marker_table(warehouse)
    with warehouse.cursor() as conn:
        clear_state_marker(conn, marker)
    validated = latest_metadata(context.instance, [EDGES, XJS_PERSONS]) if result.touched is not None else {}
    state = result.state if result.state is not None else pl.DataFrame(schema=STATE_SCHEMA)
    edges_key, persons_key = ["person_id_dataset_l", "person_id_dataset_r"], [PERSON]
    touched = None if result.touched is None else pl.DataFrame({PERSON: result.touched.cast(pl.String)})
    edges = _state_change(result.edges, previous.edges if previous is not None else None, edges_key,
                          None if touched is None else _edges_touching(result.edges, previous, touched),
                          validated.get(EDGES))
    yield Output(edges, output_name="edges", metadata={
        "edges": result.edges.height,
        **{k: result.stats[k] for k in ("lookup_mode", "reason", "variant_pairs", "persons_rescored", "persons_grown",
                                        "variants_rescored", "edges_kept",
                                        "clustering_mode", "clustering_reason", "clustering_persons_reclustered")
           if k in result.stats},
        **{f"seconds_{k}": round(v, 2) for k, v in result.timings.items()}})
    persons = _state_change(state, previous.persons if previous is not None else None, persons_key, touched,
                            validated.get(XJS_PERSONS))
    yield Output(persons, output_name="persons", metadata={"persons": state.height})
    with warehouse.cursor() as conn:
        if result.digests is not None:
            table = digests_table(warehouse)
            written = store_digests(conn, table.name, result.digests, bool(table_columns(conn, table.schema, table.table)))
            context.log.info(f"variant digests stored for the next lookup: {written} row(s)"
                             f"{'' if result.digests.replaces is None else ' (the changed persons)'}")
        mark_state(conn, marker, context.run_id, state.height, result.edges.height)


def _edges_touching(edges: pl.DataFrame, previous: PreviousXjs | None, touched: pl.DataFrame) -> pl.DataFrame:
    """The keys of the edges, now or stored, with an end in ``touched``."""
    frames = [edges] + ([previous.edges] if previous is not None and previous.edges is not None else [])
    ends = [frame.filter(pl.col("person_id_dataset_l").is_in(touched.get_column(PERSON).implode())
                         | pl.col("person_id_dataset_r").is_in(touched.get_column(PERSON).implode()))
            .select("person_id_dataset_l", "person_id_dataset_r") for frame in frames]
    return pl.concat(ends).unique()


def _state_change(now: pl.DataFrame, stored: pl.DataFrame | None, key: list[str], candidates: pl.DataFrame | None,
                  metadata: dict | None) -> pl.DataFrame | ChangedRows:
    """``now`` as its change to the stored table (``changed_rows``, of the ``candidates`` keys: the
    rows of every other key are the stored ones), when the stored table has ``now``'s columns; else
    ``now`` whole. The writer applies the change in place only over the content its last write
    validated whole, and checks the changed table holds ``now``'s content (else it writes ``now``)."""
    if candidates is None or stored is None or stored.schema != now.schema:
        return now
    deletes, updates, inserts = changed_rows(stored, now, key, candidates)
    validated = (metadata or {}).get(VALIDATED_CONTENT)
    # a changed row is deleted and appended, not updated where it is: DuckDB's UPDATE of rows
    # spread over the table cost ten times the delete and insert (0.6 against 0.06 CPU s for 12,000
    # of 550,000 persons), and nothing reads these tables' row order
    return ChangedRows(key=tuple(key), deletes=pl.concat([deletes, updates.select(key)]), updates=updates.head(0),
                       inserts=pl.concat([updates, inserts]), expected=now, rewrite=now,
                       validated_before=getattr(validated, "value", validated), appendable=True)


@multi_asset(
    name="xjs_lookup",
    # every dataset's person records and clusters, read by handle (`linkage_table`)
    deps=[linkage_key(s, name) for name in ("person_records", "clusters") for s in SOURCES],
    outs={
        "lookup": AssetOut(
            key=LOOKUP, group_name="linkage", metadata={"schema": "linkage_xjs"}, kinds={"splink", "duckdb"},
            description="Cross-justice person lookup: one row per source record with its per-dataset person "
            "and cross-justice person ids at the high, medium and low thresholds (nested).",
        ),
        "edges": AssetOut(
            key=EDGES, group_name="linkage", metadata={"schema": "linkage_xjs"}, kinds={"splink", "duckdb"},
            description="Scored cross-dataset person pairs behind the lookup (best variant pair per pair).",
        ),
        "persons": AssetOut(
            key=XJS_PERSONS, group_name="linkage", metadata={"schema": "linkage_xjs"}, kinds={"polars", "duckdb"},
            description="One row per per-dataset person: a hash of its name / DOB variants and the model its edges "
            "were scored with, so the next lookup scores only the pairs of new or changed persons.",
        ),
        "id_changes": AssetOut(
            key=XJS_ID_CHANGES, group_name="linkage", metadata={"schema": "linkage_xjs"}, kinds={"polars", "duckdb"},
            description="History of cross-justice id changes between runs, per level (high / medium / low): "
            "merges, splits, records moved between persons, new and retired ids.",
        ),
    },
    check_specs=[AssetCheckSpec(
        "lookup_invariants", asset=LOOKUP, blocking=True,
        description="Each per-dataset person has one id per threshold; high nests in medium, medium in low; "
        "every row references an existing record.",
    )],
)
def xjs_lookup(context: AssetExecutionContext, linkage: LinkageSettings, warehouse: Warehouse):
    tables = {s: (linkage_table(warehouse.database, s, "person_records"),
                  linkage_table(warehouse.database, s, "clusters")) for s in SOURCES}
    made_from = _lookup_fingerprint(context, linkage, tables)
    if (kept := kept_if_unchanged(context, made_from(), linkage.mode)) is not None:
        yield from kept  # no dataset's records or persons changed: the lookup would be the same
        return
    stored = linkage_table(warehouse.database, "xjs", "lookup")
    with warehouse.cursor() as conn:
        in_database = stored_lookup_usable(conn, stored.name)
        # carried in the database: the records' keys go to a scratch catalog, not into Python
        scratch = attach_scratch(conn) if in_database else None
    try:
        previous = previous_xjs(warehouse) if linkage.mode == "incremental" else None
        result = run_lookup(context, linkage, warehouse, tables, sorted_lookup=not in_database, previous=previous,
                            keys_into=f"{scratch}.keys" if scratch is not None else None)
        fingerprint = made_from()  # with the model this run saved: the one the next run finds and reuses
        records = {s: r for s, (r, _) in tables.items()}
        outputs = (_outputs_carried_in_database(context, warehouse, result, stored, records, previous, scratch,
                                                in_place=linkage.mode == "incremental") if scratch is not None
                   else _outputs_carried_in_polars(context, warehouse, result, records, previous))
        for item in outputs:
            yield Output(item.value, output_name=item.output_name, metadata={**item.metadata, FINGERPRINT: fingerprint}) \
                if isinstance(item, Output) else item
    finally:
        if scratch is not None:  # detached by the carry already, unless it failed before
            with warehouse.cursor() as conn:
                detach_scratch(conn, scratch)


def _lookup_fingerprint(context: AssetExecutionContext, linkage: LinkageSettings,
                        tables: dict[str, tuple[StoredTable, StoredTable]]) -> Callable[[], str]:
    """What the lookup is made from: every dataset's person records and clusters (as their writes
    recorded them), its settings, the pseudonymisation key (the records' hashed ids) and the saved
    model, read when called: the step saves the model it trained or reused, so the fingerprint it
    records is taken after that, and the next run, finding the same model, keeps the lookup. A run
    with nothing new (a sensor's or a user's repeat) linked every variant again (~35 s of a
    300,000-people run that changed nothing)."""
    handles = {linkage_key(s, name): table for s, pair in tables.items()
               for name, table in zip(("person_records", "clusters"), pair)}
    inputs = recorded_inputs_fingerprint(context.instance, handles, settings=(
        XJS_THRESHOLDS, linkage.retrain_growth, linkage.backend, key_fingerprint()))
    return lambda: inputs_fingerprint({}, files=[xjs_model_file(linkage)], settings=inputs)


def _lookup_metadata(records: int, persons: dict[str, int], kept: dict[str, tuple[int, int]], result: XjsResult,
                     **more) -> dict:
    return {
        "pseudonymisation_key": "DEVELOPMENT key (set DATAFIRST_PSEUDONYMISATION_KEY)"
        if key_is_development() else "from environment",
        "records": records,
        **{f"persons_{level}": n for level, n in persons.items()},
        **{f"unchanged_persons_kept_{lv}": f"{k} of {n}" for lv, (n, k) in kept.items()},
        "thresholds": list(result.thresholds),
        **more,
    }


def _outputs_carried_in_polars(context: AssetExecutionContext, warehouse: Warehouse, result: XjsResult,
                               records: dict[str, StoredTable], previous_state: PreviousXjs | None):
    """The first lookup (or one over a stored lookup this version cannot read): ids carried and
    record ids hashed over whole frames."""
    previous, history = stored_table(warehouse, "xjs", "lookup"), stored_table(warehouse, "xjs", "id_changes")
    carried, changes = carry_forward_xjs_ids(result.lookup, previous, history)
    lookup = add_record_hashes(carried, previous)
    history = xjs_id_change_history(history, changes, run_id=context.run_id)
    # The change log goes first: the next run finds every id issued even if the lookup fails to store.
    first_run = previous is None or previous.is_empty()
    yield Output(history, output_name="id_changes", metadata={
        **{f"this_run_{name}": n for name, n in xjs_change_counts(changes, lookup, first_run).items()},
        "history_rows": history.height,
    })
    kept = unchanged_xjs_persons_kept(previous, lookup) if previous is not None and previous.height else {}
    persons = {level: lookup[f"person_id_{level}"].n_unique() for level in ("high", "medium", "low")}
    yield Output(lookup, output_name="lookup", metadata=_lookup_metadata(lookup.height, persons, kept, result))
    yield from state_outputs(context, warehouse, result, previous_state)
    problems = check_lookup_invariants(lookup, stored_record_keys(warehouse, records))
    yield _invariants(problems)


def _outputs_carried_in_database(context: AssetExecutionContext, warehouse: Warehouse, result: XjsResult,
                                 stored: StoredTable, records: dict[str, StoredTable],
                                 previous_state: PreviousXjs | None, scratch: str, in_place: bool = False):
    """Ids carried forward against the stored lookup in DuckDB (``xjs_carry``) in the attached
    ``scratch`` catalog (detached here, when the lookup is stored): only the records whose ids may
    change reach Python, and the lookup is stored from the database (``in_place``, in an
    incremental run: only its changed rows, `_lookup_change`)."""
    history_table = linkage_table(warehouse.database, "xjs", "id_changes")
    raw = result.lookup if result.lookup is not None else RecordsAndPersons(result.keys_in_database, result.persons)
    with warehouse.cursor() as conn:
        try:
            history_name = history_table.name if {"level", "old_id", "new_id"} <= set(
                table_columns(conn, history_table.schema, history_table.table)) else None
            carried = carry_forward_stored(conn, scratch, raw, stored.name, history_name)
            problems = lookup_problems(conn, carried.table, _record_keys_sql(records))
            rows = run_history_rows(carried.changes, run_id=context.run_id, mode="full", schema=XJS_CHANGE_SCHEMA)
            history, history_rows = history_output(context, warehouse, "xjs", rows, XJS_HISTORY_SCHEMA)
            # The change log goes first: the next run finds every id issued even if the lookup fails to store.
            yield Output(history, output_name="id_changes", metadata={
                **{f"this_run_{name}": n for name, n in xjs_change_counts(carried.changes, result.lookup, False).items()},
                "history_rows": history_rows,
            })
            lookup = _lookup_change(context, conn, carried) if in_place else WarehouseQuery(carried.sql)
            # the lookup's rows are the raw lookup's records (its persons counted by the carry)
            yield Output(lookup, output_name="lookup", metadata=_lookup_metadata(
                result.stats["records"], carried.persons, carried.kept, result, **carried.stats))
        finally:
            detach_scratch(conn, scratch)
    yield from state_outputs(context, warehouse, result, previous_state)
    yield _invariants(problems)


def _lookup_change(context: AssetExecutionContext, conn, carried: StoredCarry) -> ChangedRows:
    """The carried lookup as its change to the stored one (a 1% extract changes the rows of the
    touched persons' records; the carry found them, `carried.changed`): applied in place when the
    stored lookup is the content its last write validated whole and the change gives the carried
    lookup's sums, else rewritten whole in (source_dataset, record_id) order, as before. Rows
    inserted in place go at the end of the table: nothing reads the lookup's physical order (its
    readers join it by record or person, the released linking tables are sorted), so its content,
    not its order, is what a whole rewrite would store."""
    validated = latest_metadata(context.instance, [LOOKUP])[LOOKUP].get(VALIDATED_CONTENT)
    on = "l.source_dataset = c.now_dataset and l.record_id = c.now_record"

    def rows(change: str) -> pl.DataFrame:
        return conn.sql(f"select l.* from {carried.table} l semi join {carried.changed} c on {on} and c.change = "
                        f"'{change}' order by l.source_dataset, l.record_id").pl()

    deletes = conn.sql(f"select was_dataset as source_dataset, was_record as record_id from {carried.changed} "
                       "where change = 'delete'").pl()
    return ChangedRows(key=("source_dataset", "record_id"), deletes=deletes, updates=rows("update"),
                       inserts=rows("insert"), expected=None, rewrite=carried.sql,
                       validated_before=getattr(validated, "value", validated), appendable=True,
                       expected_sums=content_sums(conn, f"select * from {carried.table}"))


def _record_keys_sql(records: dict[str, StoredTable]) -> str:
    """source_dataset, record_id of every stored person record (what the lookup must cover)."""
    return " union all ".join(f"select '{source}' as source_dataset, record_id::varchar as record_id "
                              f"from ({table.select_sql(['record_id'])})" for source, table in records.items())


def _invariants(problems: list[str]) -> AssetCheckResult:
    return AssetCheckResult(check_name="lookup_invariants", passed=not problems,
                            metadata={"problems": MetadataValue.md(bullet_list(problems))})


@asset(
    key=CASE_LOOKUP,
    ins={
        "hocas": AssetIn(key=AssetKey(["linked", "magistrates", "hocas_flatfile"]), dagster_type=StoredTable),
        "xhibit": AssetIn(key=AssetKey(["linked", "crown_court", "xhibit_flatfile"]), dagster_type=StoredTable),
        "lookup": AssetIn(key=LOOKUP, dagster_type=StoredTable),
    },
    group_name="linkage",
    metadata={"schema": "linkage_criminal_courts"},
    kinds={"polars", "duckdb"},
    description="Magistrates' (case id, defendant id) -> Crown Court defendant-on-case id with a match score, "
    "from URN, ASN, PNC, committal date, originating court and the cross-justice person.",
    check_specs=[AssetCheckSpec(
        "one_to_one", asset=CASE_LOOKUP, blocking=True,
        description="Each Crown Court defendant-on-case and each magistrates' defendant-case is linked at most once.",
    )],
)
def case_lookup(context: AssetExecutionContext, linkage: LinkageSettings, hocas: StoredTable, xhibit: StoredTable,
                lookup: StoredTable):
    handles = {AssetKey(["linked", "magistrates", "hocas_flatfile"]): hocas,
               AssetKey(["linked", "crown_court", "xhibit_flatfile"]): xhibit, LOOKUP: lookup}
    fingerprint = recorded_inputs_fingerprint(context.instance, handles)
    if (kept := kept_if_unchanged(context, fingerprint, linkage.mode)) is not None:
        yield from kept  # the same cases and persons: the same links
        return
    hocas_rows, xhibit_rows, persons = _case_link_inputs(hocas, xhibit, lookup)
    links = build_case_link(hocas_rows, xhibit_rows, person_link=persons)
    yield Output(links, metadata={
        "links": links.height,
        "crown_defendants_on_case": xhibit_rows.height,
        "linked_share": round(links.height / xhibit_rows.height, 4) if xhibit_rows.height else None,
        FINGERPRINT: fingerprint,
    })
    duplicated = {
        column: links.height - links[column].n_unique() for column in ("defendant_case_id", "defendant_on_case_id")
    }
    yield AssetCheckResult(passed=not any(duplicated.values()), metadata=duplicated)


def _case_link_inputs(hocas: StoredTable, xhibit: StoredTable,
                      lookup: StoredTable) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """What `build_case_link` reads, and nothing else: the columns it looks at of the two linked tables
    (the rest were a third of a 1M-people run's reading), and the lookup's rows of the two datasets it
    joins (a fifth of the lookup's rows), in the stored order."""
    with warehouse_cursor(hocas.database) as conn:
        def read(table: StoredTable, wanted: tuple[str, ...]) -> pl.DataFrame:
            present = table_columns(conn, table.schema, table.table)
            sql = table.select_sql([c for c in wanted if c in present] or None)
            return pl.from_arrow(conn.sql(sql).to_arrow_table())  # type: ignore[return-value]

        columns = table_columns(conn, lookup.schema, lookup.table)
        wanted = [c for c in ("source_dataset", "record_id", "person_id_medium") if c in columns]
        sources = ", ".join(f"'{s}'" for s in PERSON_LINK_SOURCES)
        where = f" where source_dataset in ({sources})" if "source_dataset" in columns else ""
        persons = pl.from_arrow(conn.sql(f"select * from ({lookup.select_sql(wanted or None)}) _l{where}").to_arrow_table())
        return read(hocas, HOCAS_COLUMNS), read(xhibit, XHIBIT_COLUMNS), persons  # type: ignore[return-value]


def xjs_assets():
    return [xjs_lookup, case_lookup]
