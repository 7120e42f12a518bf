"""Only the changed rows written: the linked table of a new extract as a change to the stored one."""

from dataclasses import replace
from datetime import date

import polars as pl
import pytest

from datafirst_assets.linkage.records import add_person_ids, person_ids_sql
from datafirst_assets.warehouse.io_manager import apply_changed_rows, changes_to
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets_tests.test_deidentify import magistrates_extract
from datafirst_assets_tests.test_deidentify_by_row import _second_extract

ID, PERSON = "defendant_case_id", "estimated_defendant_id"


def _staged_and_clusters(flat: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A staged person table (every version) and its clusters (each record's latest person id)."""
    latest = flat.sort("extract_date").unique(ID, keep="last")
    return flat.drop(PERSON), latest.select(pl.col(ID).alias("record_id"), pl.col(PERSON))


def _write(conn, name: str, frame: pl.DataFrame) -> None:
    conn.register("_frame", frame.to_arrow())
    try:
        conn.execute(f"create or replace table {name} as select * from _frame")
    finally:
        conn.unregister("_frame")


def _read(conn, sql: str) -> pl.DataFrame:
    return pl.from_arrow(conn.sql(sql).to_arrow_table())


def test_person_ids_in_sql_are_add_person_ids(tmp_path):
    staged, clusters = _staged_and_clusters(_second_extract(magistrates_extract())["hocas_flatfile"])
    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        _write(conn, "staged", staged)
        _write(conn, "clusters", clusters)
        sql = person_ids_sql("select * from staged", "select * from clusters", ID, PERSON)
        in_sql = _read(conn, f"select * from ({sql}) order by {ID}")
    assert in_sql.equals(add_person_ids(staged, clusters, ID, PERSON))  # same rows, order and types


def test_a_new_extracts_linked_table_is_written_as_its_changed_rows(tmp_path):
    extract = magistrates_extract()
    first = extract["hocas_flatfile"]
    staged, clusters = _staged_and_clusters(_second_extract(extract)["hocas_flatfile"])
    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        _write(conn, "linked", add_person_ids(*_staged_and_clusters(first), ID, PERSON))
        _write(conn, "staged", staged)
        _write(conn, "clusters", clusters)
        changes = changes_to(conn, "linked", person_ids_sql("select * from staged", "select * from clusters", ID,
                                                            PERSON), [ID], validated_before=None)
        # DC0002 (another person id) and DC0003 (a new version) updated, DC0004 (new) appended; DC0001 untouched
        assert changes.updates[ID].to_list() == ["DC0002", "DC0003"] and changes.inserts[ID].to_list() == ["DC0004"]
        assert changes.deletes.is_empty() and changes.appendable
        conn.execute("begin")
        reason, _, _ = apply_changed_rows(conn, "linked", "main", "linked", changes, key=None)
        conn.execute("commit")
        conn.execute("set preserve_insertion_order = true")  # the stored order (small tables: one thread)
        stored = _read(conn, "select * from linked")
        conn.execute("set preserve_insertion_order = false")
    assert reason is None
    assert stored.equals(add_person_ids(staged, clusters, ID, PERSON))  # what a rewrite stores, in its order


def test_changed_rows_may_give_the_expected_table_as_a_frame(tmp_path):
    """A step that has its whole table in Python (an incremental link's scored pairs) gives it as the
    expected content: a change that makes it is applied in place, one that does not is refused."""
    from datafirst_assets.warehouse.io_manager import ChangedRows

    stored = pl.DataFrame({"a": ["1", "1", "2", "3"], "b": ["2", "3", "3", "4"], "p": [0.5, 0.9, 0.2, 0.7]})
    expected = pl.concat([stored.filter(pl.col("a") != "1"), pl.DataFrame({"a": ["0"], "b": ["5"], "p": [0.3]})])

    def change(inserts: pl.DataFrame) -> ChangedRows:
        return ChangedRows(key=("a", "b"), deletes=stored.filter(pl.col("a") == "1").select("a", "b"),
                           updates=stored.head(0), inserts=inserts, expected=expected, rewrite=expected,
                           validated_before=None, appendable=True)

    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        for inserts, wanted in ((expected.tail(1), None), (expected.tail(1).with_columns(pl.lit(0.4).alias("p")),
                                                           "the changed table differs from the expected one")):
            _write(conn, "pairs", stored)
            conn.execute("begin")
            reason, _, _ = apply_changed_rows(conn, "pairs", "main", "pairs", change(inserts), key=None)
            conn.execute("rollback" if reason else "commit")
            assert reason == wanted
            after = _read(conn, "select * from pairs").sort("a", "b")
            assert after.equals((expected if wanted is None else stored).sort("a", "b"))


_STORED = pl.DataFrame({"id": ["a", "b", "c", "d"], "n": [1, 2, None, 4], "x": [0.5, -0.0, None, 2.5],
                        "day": pl.Series([date(2024, 1, 1), None, date(2024, 2, 1), date(2024, 3, 1)]),
                        "flag": [True, None, False, True]})
# the expected table: b deleted, c updated (where it is), e appended
_EXPECTED = pl.concat([_STORED.filter(pl.col("id") != "b").with_columns(
    n=pl.when(pl.col("id") == "c").then(pl.lit(30, dtype=pl.Int64)).otherwise(pl.col("n"))),
    pl.DataFrame({"id": ["e"], "n": [5], "x": [1.0], "day": [date(2024, 4, 1)], "flag": [None]},
                 schema=_STORED.schema)])
_RIGHT = {"deletes": _STORED.filter(pl.col("id") == "b").select("id"), "updates": _EXPECTED.filter(pl.col("id") == "c"),
          "inserts": _EXPECTED.filter(pl.col("id") == "e")}


def _fingerprint(conn, table: str) -> str:
    from datafirst_assets.warehouse.content import content_sums, fingerprint_of, relation_columns

    return fingerprint_of(relation_columns(conn, table), *content_sums(conn, f"select * from {table}"))


def _stored_as_recorded(conn, name: str, stored: pl.DataFrame, recorded: pl.DataFrame | None) -> str | None:
    """`stored` written as table `name`; the fingerprint its last write recorded had it held `recorded`."""
    fingerprint = None
    if recorded is not None:
        _write(conn, name, recorded)
        fingerprint = _fingerprint(conn, name)
    _write(conn, name, stored)
    return fingerprint


def _apply(tmp_path, stored: pl.DataFrame, recorded: pl.DataFrame | None = None,
           **wrong) -> tuple[str | None, tuple[int, int], pl.DataFrame, tuple[int, int]]:
    """A change applied in place to `stored` (the right one, but for `wrong` parts): the reason it was
    refused, the sums it reports, the table after it (committed when accepted), its content sums.
    `recorded`: the table whose fingerprint the stored one's latest write recorded (given, the stored
    rows are not hashed)."""
    from datafirst_assets.warehouse.content import content_sums
    from datafirst_assets.warehouse.io_manager import ChangedRows

    parts = {**_RIGHT, **wrong}
    change = ChangedRows(key=("id",), **parts, expected=_EXPECTED, rewrite=_EXPECTED, validated_before=None)
    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        fingerprint = _stored_as_recorded(conn, "t", stored, recorded)
        conn.execute("begin")
        reason, _, sums = apply_changed_rows(conn, "t", "main", "t", change, key=None, recorded=fingerprint)
        conn.execute("rollback" if reason else "commit")
        return reason, sums, _read(conn, "select * from t").sort("id"), content_sums(conn, "select * from t")


@pytest.fixture(params=[122_880, 2], ids=["one row group", "several row groups"])
def row_group(request, monkeypatch) -> int:
    """The rows of one row group: the stored table (4 rows) within one, or over several, where an
    updated row is deleted and appended (`io_manager._moves_updated_rows`)."""
    from datafirst_assets.warehouse import io_manager

    monkeypatch.setattr(io_manager, "ONE_ROW_GROUP", request.param)
    return request.param


@pytest.mark.parametrize("recorded", [False, True], ids=["stored rows hashed", "stored sums as recorded"])
def test_a_right_change_reports_the_sums_of_the_table_it_leaves(tmp_path, monkeypatch, recorded, row_group):
    """The changed table is not hashed again: its sums are the stored ones less the removed rows' plus
    the written rows' (nulls, floats, dates, booleans), equal to hashing the table it left. With the
    stored table's fingerprint as its last write recorded it, the stored rows are not hashed either:
    only the rows the change names are read."""
    from datafirst_assets.warehouse import io_manager

    if recorded:
        monkeypatch.setattr(io_manager, "_stored_sums", lambda *a: pytest.fail("the stored table was hashed"))
    reason, sums, after, hashed = _apply(tmp_path, _STORED, recorded=_STORED if recorded else None)
    assert reason is None and after.equals(_EXPECTED.sort("id")) and sums == hashed


def test_a_stale_recorded_fingerprint_never_leaves_a_wrong_table(tmp_path):
    """A recorded fingerprint that is not the stored table's (a write committed whose record was lost)
    makes sums that miss the expected table's: the change is refused, the table rewritten by the caller.
    A record of other columns is not taken: the stored rows are hashed, and the change applies."""
    reason, _, after, _ = _apply(tmp_path, _STORED, recorded=_STORED.head(3))
    assert reason == "the changed table differs from the expected one" and after.equals(_STORED.sort("id"))
    reason, _, after, _ = _apply(tmp_path, _STORED, recorded=_STORED.drop("flag"))
    assert reason is None and after.equals(_EXPECTED.sort("id"))


@pytest.mark.parametrize(("wrong", "why"), [
    ({"deletes": _STORED.head(0).select("id")}, "the changed table differs from the expected one"),  # b kept
    ({"updates": _EXPECTED.filter(pl.col("id") == "c").with_columns(n=pl.lit(31, dtype=pl.Int64))},
     "the changed table differs from the expected one"),
    ({"updates": _EXPECTED.filter(pl.col("id") == "e")}, "an updated row is not stored"),
    ({"inserts": pl.concat([_RIGHT["inserts"], _STORED.filter(pl.col("id") == "a")])},
     "the changed table has duplicate keys"),  # a inserted again
    ({"deletes": pl.DataFrame({"id": ["b", "b"]})}, "the change names a key twice"),
    ({"deletes": pl.DataFrame({"id": ["b", "c"]})}, "the change names a key twice"),  # c deleted and updated
], ids=["a delete missing", "a wrong update", "an update of no stored row", "a stored key inserted",
        "a key deleted twice", "a key deleted and updated"])
@pytest.mark.parametrize("recorded", [False, True], ids=["stored rows hashed", "stored sums as recorded"])
def test_a_wrong_change_is_refused_and_leaves_the_table_unchanged(tmp_path, wrong, why, recorded, row_group):
    """A change that does not make the expected table is caught (the IO manager then rewrites the table
    from `rewrite` in the same transaction): verification is not skipped for any part of it, whether
    the stored table's sums were hashed or taken as its last write recorded them."""
    reason, _, after, _ = _apply(tmp_path, _STORED, recorded=_STORED if recorded else None, **wrong)
    assert reason == why and after.equals(_STORED.sort("id"))


class _Statements:
    """A connection that keeps the SQL of every `execute` (the rest passed through)."""

    def __init__(self, conn):
        self._conn, self.sql = conn, []

    def execute(self, sql, *args, **kwargs):
        self.sql.append(" ".join(sql.split()).lower())
        return self._conn.execute(sql, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_an_updated_row_of_a_table_over_several_row_groups_is_deleted_and_appended(tmp_path, row_group):
    """DuckDB's UPDATE of rows spread over a large table rewrote every updated column of each row group
    it touched (at 1M people, updates of a few hundred rows cost more than the rest of the write). Over
    several row groups, whose order no write keeps, an updated row is deleted and its new version
    appended; within one row group it is updated where it is, so a table in key order stays in it."""
    from datafirst_assets.warehouse.content import content_sums
    from datafirst_assets.warehouse.io_manager import ChangedRows

    change = ChangedRows(key=("id",), **_RIGHT, expected=_EXPECTED, rewrite=_EXPECTED, validated_before=None)
    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        _write(conn, "t", _STORED)
        recording = _Statements(conn)
        conn.execute("begin")
        reason, _, sums = apply_changed_rows(recording, "t", "main", "t", change, key=None)
        conn.execute("commit")
        assert reason is None and sums == content_sums(conn, "select * from t")
        conn.execute("set preserve_insertion_order = true")  # the stored order
        after = _read(conn, "select * from t")
    updates = [sql for sql in recording.sql if sql.startswith("update ")]
    if row_group > 4:
        assert len(updates) == 1 and after["id"].to_list() == ["a", "c", "d", "e"]
    else:
        assert not updates and after["id"].to_list() == ["a", "d", "c", "e"]
    assert after.sort("id").equals(_EXPECTED.sort("id"))


def test_a_stored_table_with_duplicate_keys_is_not_changed_in_place(tmp_path):
    """Without a contract saying the key is unique, the stored key is counted: a duplicated key would
    make the accounting of the rows removed wrong."""
    stored = pl.concat([_STORED, _STORED.filter(pl.col("id") == "a")])
    reason, _, after, _ = _apply(tmp_path, stored)
    assert reason == "the stored table has duplicate keys" and after.equals(stored.sort("id"))


@pytest.mark.parametrize("row_group", [122_880, 3], ids=["one row group", "several"])
def test_new_rows_sorting_before_stored_ones_are_applied_in_place_and_the_table_sorted_again(tmp_path, monkeypatch,
                                                                                             row_group):
    """Record ids as text pass "999999" -> "1000000" (1,000,000 people): a new record sorts before stored
    ones. With the table's `order` named, the change is applied in place and a table of one row group
    stored again in that order, the rows and order a rewrite gives (before, the table was rewritten from
    every row); a larger one, whose row groups a rewrite stores in no set order, keeps the rows appended.
    The sums reported are those of the table left."""
    from datafirst_assets.warehouse import io_manager
    from datafirst_assets.warehouse.content import content_sums
    from datafirst_assets.warehouse.io_manager import ChangedRows

    monkeypatch.setattr(io_manager, "ONE_ROW_GROUP", row_group)

    stored = pl.DataFrame({"id": ["999997", "999998", "999999"], "n": [1, 2, 3]})
    expected = pl.DataFrame({"id": ["1000000", "1000001", "999997", "999999"], "n": [10, 11, 1, 30]})  # sorted as text
    change = ChangedRows(key=("id",), deletes=pl.DataFrame({"id": ["999998"]}), updates=expected.filter(pl.col("id") == "999999"),
                         inserts=expected.head(2), expected=expected, rewrite=expected, validated_before=None,
                         appendable=False, order=("id",))
    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        _write(conn, "t", stored)
        conn.execute("begin")
        reason, _, sums = apply_changed_rows(conn, "t", "main", "t", change, key=None)
        conn.execute("commit")
        conn.execute("set preserve_insertion_order = true")  # the stored order
        after = _read(conn, "select * from t")
        assert sums == content_sums(conn, "select * from t")
    assert reason is None
    if row_group > 3:
        assert after.equals(expected)
    else:  # the kept rows where they were, the new ones after them
        assert after.equals(pl.concat([expected.tail(2), expected.head(2)]))
    # without `order` such a change is still refused (rewritten whole by the IO manager)
    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        _write(conn, "t", stored)
        reason, _, _ = apply_changed_rows(conn, "t", "main", "t", replace(change, order=()), key=None)
    assert reason == "new rows sort before stored ones"


_LOG = pl.DataFrame({"old_id": [None, 1, 2], "new_id": [1, 3, None], "kind": ["new", "merge", "retired"],
                     "run_id": ["r1", "r2", "r2"]}, schema={"old_id": pl.Int64, "new_id": pl.Int64, "kind": pl.String,
                                                            "run_id": pl.String})


def _append(tmp_path, rows: pl.DataFrame, replacing=None, recorded: pl.DataFrame | None = None, stored=_LOG):
    """`append_rows` of `rows` to a stored log (committed when accepted): the reason it was refused,
    the sums it reports, the log after it and its content sums."""
    from datafirst_assets.warehouse.content import content_sums
    from datafirst_assets.warehouse.io_manager import AppendedRows, append_rows

    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        fingerprint = _stored_as_recorded(conn, "log", stored, recorded)
        conn.execute("begin")
        reason, _, sums, _ = append_rows(conn, "log", "main", "log", AppendedRows(
            rows=rows, replacing=replacing, rewrite=lambda: pl.DataFrame(), validated_before=None), key=None,
            recorded=fingerprint)
        conn.execute("rollback" if reason else "commit")
        return reason, sums, _read(conn, "select * from log"), content_sums(conn, "select * from log")


def test_rows_appended_to_a_log_keep_it_and_report_its_sums_without_a_duplicate_check(tmp_path):
    """A log has no key (a new id's old id is null; a run may log one change twice): rows are appended
    after the stored ones, the stored rows of the run being written again replaced, and the sums
    reported are those of the log left, whether the stored sums were hashed or taken as recorded."""
    again = pl.DataFrame({"old_id": [3, 3], "new_id": [4, 4], "kind": ["split", "split"], "run_id": ["r2", "r2"]},
                         schema=_LOG.schema)
    for recorded in (None, _LOG):
        reason, sums, after, hashed = _append(tmp_path, again, recorded=recorded)
        assert reason is None and after.equals(pl.concat([_LOG, again])) and sums == hashed
        reason, sums, after, hashed = _append(tmp_path, again, replacing=("run_id", "r2"), recorded=recorded)
        assert reason is None and after.equals(pl.concat([_LOG.head(1), again])) and sums == hashed


def test_a_log_is_not_appended_to_when_its_columns_differ_and_a_stale_record_is_not_taken(tmp_path):
    """Other columns: the caller rewrites the log. A record whose row count is not the log's (a write
    whose record was lost) is not taken: the stored rows are hashed, and the sums are right."""
    reason, _, after, _ = _append(tmp_path, _LOG.drop("run_id"))
    assert reason == "the stored columns differ" and after.equals(_LOG)
    reason, sums, after, hashed = _append(tmp_path, _LOG.tail(1), recorded=_LOG.head(2))
    assert reason is None and after.equals(pl.concat([_LOG, _LOG.tail(1)])) and sums == hashed
