"""Person journeys by person: the table recomputing only the persons whose rows changed is the table
computed from scratch, whatever changed (`person_journeys.journeys_by_person`)."""

import datetime as dt
import os
import random

import duckdb

import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from datafirst_assets.defs.derived import derived_assets, derived_key, journeys_state_folder
from datafirst_assets.defs.linkage import LinkageSettings
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.derived.person_journeys import (
    LATEST,
    PERSON,
    digest_sql,
    journeys_by_person,
    journeys_change,
    journeys_from,
    restricted_release,
    load_state,
    person_journeys,
    save_state,
    state_path,
)
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.io_manager import WarehouseIOManager
from datafirst_assets_tests.derived_fixtures import random_release
from datafirst_assets_tests.test_derived import _stub_release

LOOKUP = ("linking", "xjs_lookup")


def _set(frame: pl.DataFrame, row: int, column: str, value) -> pl.DataFrame:
    """`frame` with one cell changed."""
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value, dtype=frame.schema[column]))
        .otherwise(pl.col(column)).alias(column))


def _drop(frame: pl.DataFrame, row: int) -> pl.DataFrame:
    return frame.filter(pl.int_range(pl.len()) != row)


def _new_row(frame: pl.DataFrame, row: int, **changes) -> pl.DataFrame:
    """`frame` with a copy of one row appended, some of its values changed."""
    copy = frame.slice(row, 1).with_columns(**{c: pl.lit(v, dtype=frame.schema[c]) for c, v in changes.items()})
    return pl.concat([frame, copy])


def _linked_row(release, table, person_column, rng) -> int:
    """A row of `table` whose person is in the lookup (so the change reaches a person's journey)."""
    dataset = table[0]
    ids = set(release[LOOKUP].filter(pl.col("source_dataset") == dataset)["dataset_person_id"].to_list())
    rows = [i for i, v in enumerate(release[table][person_column].to_list()) if v in ids]
    return rng.choice(rows)


def _child_of_linked(release, child, key, parent, person_column, rng) -> int:
    ids = set(release[LOOKUP].filter(pl.col("source_dataset") == parent[0])["dataset_person_id"].to_list())
    keys = set(release[parent].filter(pl.col(person_column).is_in(list(ids)))[key].to_list())
    return rng.choice([i for i, v in enumerate(release[child][key].to_list()) if v in keys])


# One change of each kind a new extract makes, each reaching a person through another table.
EDITS = {
    "magistrates case added": lambda r, g: {("magistrates", "hocas_flatfile"): _new_row(
        r[("magistrates", "hocas_flatfile")], _linked_row(r, ("magistrates", "hocas_flatfile"), "estimated_defendant_id", g),
        defendant_case_id_hash="f" * 64, first_hearing_date=dt.date(2024, 1, 5))},
    "prison journey removed": lambda r, g: {("prison", "nomis_flatfile"): _drop(
        r[("prison", "nomis_flatfile")], _linked_row(r, ("prison", "nomis_flatfile"), "estimated_offender_id", g))},
    "release date changed": lambda r, g: {("prison", "nomis_flatfile"): _set(
        r[("prison", "nomis_flatfile")], _linked_row(r, ("prison", "nomis_flatfile"), "estimated_offender_id", g),
        "release_date", None)},
    "offence date changed": lambda r, g: {("magistrates", "hocas_all_offence"): _set(
        r[("magistrates", "hocas_all_offence")], _child_of_linked(
            r, ("magistrates", "hocas_all_offence"), "defendant_case_id_hash", ("magistrates", "hocas_flatfile"),
            "estimated_defendant_id", g), "offence_date", dt.date(2001, 1, 1))},
    "requirement removed": lambda r, g: {("probation", "delius_rqmnt"): _drop(
        r[("probation", "delius_rqmnt")], _child_of_linked(
            r, ("probation", "delius_rqmnt"), "event_id_hash", ("probation", "delius_flatfile"),
            "estimated_offender_id", g))},
    "score changed": lambda r, g: {("oasys", "oasys_assessments_details_core_risk"): _set(
        r[("oasys", "oasys_assessments_details_core_risk")], _child_of_linked(
            r, ("oasys", "oasys_assessments_details_core_risk"), "assessment_id_hash", ("oasys", "assessments_metadata"),
            "estimated_offender_id", g), "ogrs3_score", 99)},
    "family case date changed": lambda r, g: {("family", "family_cases"): _set(
        r[("family", "family_cases")], _child_of_linked(
            r, ("family", "family_cases"), "case_id_hash", ("family", "family_people"), "estimated_party_id", g),
        "issue_date", dt.date(2000, 2, 2))},
    "civil case date changed": lambda r, g: {("civil", "cases"): _set(
        r[("civil", "cases")], _child_of_linked(r, ("civil", "cases"), "case_id_hash", ("civil", "parties"),
                                                "estimated_party_id", g), "issue_date", dt.date(2000, 3, 3))},
    "crown court case linked to the person's magistrates' case": lambda r, g: _link_crown_to_own_mags(r, g),
    "lookup row moved to another person": lambda r, g: {LOOKUP: _set(
        r[LOOKUP], g.randrange(r[LOOKUP].height), PERSON, int(r[LOOKUP][PERSON].max()))},
    "person added": lambda r, g: {LOOKUP: _new_row(r[LOOKUP], g.randrange(r[LOOKUP].height),
                                                    dataset_person_id=10**6, xjs_person_id_medium=10**6)},
}


def _link_crown_to_own_mags(release, rng) -> dict:
    """A Crown Court case's lookup row pointed at a magistrates' case of the same person (a stage, not a
    new case): criminal_cases changes only if the person's own magistrates' rows are read."""
    lookup = release[LOOKUP]
    both = (lookup.filter(pl.col("source_dataset") == "magistrates").select("dataset_person_id", PERSON)
            .join(lookup.filter(pl.col("source_dataset") == "crown_court").select(
                pl.col("dataset_person_id").alias("crown_id"), PERSON), on=PERSON))
    mags, crown = release[("magistrates", "hocas_flatfile")], release[("crown_court", "xhibit_flatfile")]
    pairs = (both.join(mags.select(pl.col("estimated_defendant_id").alias("dataset_person_id"), "defendant_case_id_hash"),
                       on="dataset_person_id")
             .join(crown.select(pl.col("estimated_defendant_id").alias("crown_id"), "defendant_on_case_id_hash"),
                   on="crown_id"))
    pair = pairs.row(rng.randrange(pairs.height), named=True)
    links = release[("linking", "case_lookup")].filter(
        pl.col("defendant_on_case_id_hash") != pair["defendant_on_case_id_hash"])
    row = pl.DataFrame([{c: pair.get(c) for c in links.columns}], schema=links.schema)
    return {("linking", "case_lookup"): pl.concat([links, row])}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_recomputing_the_changed_persons_gives_the_table_computed_from_scratch(edit, seed):
    before = random_release(people=80, seed=seed)
    after = {**before, **EDITS[edit](before, random.Random(seed))}
    _, state, _ = journeys_by_person(before)
    journeys, new_state, computed = journeys_by_person(after, state=state)
    expected = person_journeys(after)
    assert not expected.equals(person_journeys(before))  # the edit reached someone's journey
    assert journeys.equals(expected)
    assert 0 < computed <= 3  # the changed persons only, the others kept
    assert new_state.sort(PERSON).equals(journeys_by_person(after)[1].sort(PERSON))  # as a full run stores it


def test_every_change_at_once_and_a_configured_as_of_date():
    before = random_release(people=120, seed=7)
    after, rng = dict(before), random.Random(7)
    for name in sorted(EDITS):
        after.update(EDITS[name](after, rng))
    _, state, _ = journeys_by_person(before)
    for as_of in (None, dt.date(2015, 6, 30)):
        journeys, _, computed = journeys_by_person(after, as_of=as_of, state=state)
        assert journeys.equals(person_journeys(after, as_of=as_of))
        assert 0 < computed < journeys.height // 2


def test_a_state_of_other_persons_or_no_state_still_gives_the_table():
    release = random_release(people=80, seed=3)
    other = random_release(people=80, seed=4)
    _, foreign, _ = journeys_by_person(other)
    for state in (None, foreign, foreign.head(0)):
        journeys, _, _ = journeys_by_person(release, state=state)
        assert journeys.equals(person_journeys(release))


def test_the_state_is_kept_per_variant_under_the_code_it_was_made_by(tmp_path):
    state = journeys_by_person(random_release(people=30, seed=1))[1]
    stale = tmp_path / "deidentified.0123456789abcdef.parquet"
    stale.write_bytes(b"made by other code")
    save_state(tmp_path, "deidentified", state)
    assert load_state(tmp_path, "deidentified").equals(state)
    assert load_state(tmp_path, "synthetic") is None
    assert not stale.exists() and state_path(tmp_path, "deidentified").exists()


def test_the_asset_recomputes_only_changed_persons_and_stores_the_full_table(tmp_path):
    before = random_release(people=80, seed=5)
    after = {**before, **EDITS["requirement removed"](before, random.Random(5))}
    database = str(tmp_path / "wh.duckdb")
    instance = DagsterInstance.ephemeral()  # one instance: the second run finds what the first validated

    def run(release):
        return materialize([_stub_release("deidentified", release), *derived_assets(("deidentified",))],
                           instance=instance, resources={"io_manager": WarehouseIOManager(database=database),
                                      "warehouse": Warehouse(database=database),
                                      "linkage": LinkageSettings(data_dir=str(tmp_path))})

    first = run(before)
    node = derived_key("deidentified", "person_journeys").to_python_identifier()
    assert first.asset_materializations_for_node(node)[0].metadata["persons_kept"].value == 0
    assert load_state(journeys_state_folder(tmp_path), "deidentified") is not None
    second = run(after)
    metadata = second.asset_materializations_for_node(node)[0].metadata
    assert 0 < metadata["persons_computed"].value <= 3
    # only the changed persons' rows are written (the IO manager's in-place write of `ChangedRows`)
    assert metadata["write"].value.startswith("in place: 0 row(s) deleted, ") and metadata["contract_rows_checked"].value <= 3
    with warehouse_cursor(database) as conn:
        stored = pl.from_arrow(conn.sql("select * from derived_deidentified.person_journeys").to_arrow_table())
    assert stored.sort(PERSON).equals(person_journeys(after))


def _in_duckdb(release):
    """The release's tables registered in an in-memory DuckDB: the connection and a SELECT of each."""
    conn, selects = duckdb.connect(), {}
    for i, (key, frame) in enumerate(restricted_release(release).items()):
        conn.register(f"_t{i}", frame.to_arrow())
        selects[key] = f"select * from _t{i}"
    return conn, selects


def _no_whole_release():
    raise AssertionError("the whole release was read")


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_few_changed_persons_read_only_their_rows(edit):
    """With the state's as-of date and unique keys, only the changed persons' rows leave DuckDB:
    the whole release is never read, and the table is still the one computed from scratch."""
    before = random_release(people=80, seed=11)
    after = {**before, **EDITS[edit](before, random.Random(11))}
    _, state, _ = journeys_by_person(before, as_of=dt.date(2024, 12, 31))
    conn, selects = _in_duckdb(after)
    journeys, new_state, computed = journeys_from(conn, selects, _no_whole_release, as_of=dt.date(2024, 12, 31),
                                                  state=state)
    assert journeys.equals(person_journeys(after, as_of=dt.date(2024, 12, 31)))
    assert 0 < computed <= 3
    assert new_state.equals(journeys_by_person(after, as_of=dt.date(2024, 12, 31))[1])


def test_duplicated_keys_read_the_whole_release_a_moved_as_of_date_only_the_prison_journeys():
    """A duplicated key makes a `keep="first"` depend on the rows' order, which a read of some rows from
    DuckDB does not keep: the whole release is read. A moved as-of date finishes every row again, from
    the kept rows and the prison journeys alone (custody to the new date)."""
    before = random_release(people=80, seed=12)
    cases = before[("family", "family_cases")]
    duplicated = {**before, ("family", "family_cases"): pl.concat(
        [cases, cases.head(1).with_columns(issue_date=pl.lit(dt.date(1999, 1, 1)))])}
    _, state, _ = journeys_by_person(before)
    edit = EDITS["score changed"](before, random.Random(12))
    conn, selects = _in_duckdb({**duplicated, **edit})
    with pytest.raises(AssertionError, match="whole release"):
        journeys_from(conn, selects, _no_whole_release, state=state)
    for after, as_of in (({**duplicated, **edit}, None), ({**before, **edit}, dt.date(2016, 1, 1)),
                         ({**before, **edit}, dt.date(2030, 1, 1))):
        journeys, _, computed = journeys_by_person(after, as_of=as_of, state=state)
        assert journeys.equals(person_journeys(after, as_of=as_of)) and computed < journeys.height // 2
        if as_of is not None:
            conn, selects = _in_duckdb(after)
            assert journeys_from(conn, selects, _no_whole_release, as_of=as_of, state=state)[0].equals(journeys)


def test_a_run_changing_no_person_keeps_the_state_file_and_counts_the_unlinked_row(tmp_path):
    """A release change that reaches no person (a row of a person not in the lookup) computes nobody and
    does not write the state again; the unlinked count (now counted in DuckDB) sees the new row."""
    before = random_release(people=80, seed=6)
    mags = before[("magistrates", "hocas_flatfile")]
    after = {**before, ("magistrates", "hocas_flatfile"): _new_row(
        mags, 0, defendant_case_id_hash="e" * 64, estimated_defendant_id=10**7)}
    database = str(tmp_path / "wh.duckdb")

    def run(release):
        result = materialize([_stub_release("deidentified", release), *derived_assets(("deidentified",))],
                             resources={"io_manager": WarehouseIOManager(database=database),
                                        "warehouse": Warehouse(database=database),
                                        "linkage": LinkageSettings(data_dir=str(tmp_path))})
        node = derived_key("deidentified", "person_journeys").to_python_identifier()
        return result.asset_materializations_for_node(node)[0].metadata

    first = run(before)
    path = state_path(journeys_state_folder(tmp_path), "deidentified")
    os.utime(path, ns=(10**9, 10**9))  # any write would change it
    second = run(after)
    assert second["persons_computed"].value == 0
    assert second["unlinked_rows"].value["magistrates"] == first["unlinked_rows"].value["magistrates"] + 1
    assert path.stat().st_mtime_ns == 10**9
    with warehouse_cursor(database) as conn:
        stored = pl.from_arrow(conn.sql("select * from derived_deidentified.person_journeys").to_arrow_table())
    assert stored.sort(PERSON).equals(person_journeys(after))


def test_the_change_written_is_the_changed_persons_rows_or_none_when_the_as_of_date_moved():
    """What the asset hands the IO manager to write in place: the rows of the persons whose digest
    changed (a new person appended, a lookup row moved updates two persons), the persons gone; the whole
    table when the as-of date moved (every row may differ)."""
    before = random_release(people=80, seed=13)
    frame0, state, _ = journeys_by_person(before)
    after = {**before, **EDITS["person added"](before, random.Random(13))}
    frame, new_state, _ = journeys_by_person(after, state=state)
    deletes, updates, inserts = journeys_change(frame, new_state, state)
    assert deletes.is_empty() and inserts[PERSON].to_list() == [10**6]
    applied = pl.concat([frame0.join(updates.select(PERSON), on=PERSON, how="anti"), updates, inserts]).sort(PERSON)
    assert applied.equals(frame)
    gone = {**before, LOOKUP: before[LOOKUP].filter(pl.col(PERSON) != frame0[PERSON][0])}
    frame, new_state, _ = journeys_by_person(gone, state=state)
    assert journeys_change(frame, new_state, state)[0][PERSON].to_list() == [frame0[PERSON][0]]
    moved, moved_state, _ = journeys_by_person(after, as_of=dt.date(2016, 1, 1), state=state)
    assert journeys_change(moved, moved_state, state) is None
    redrawn, redrawn_state, _ = journeys_by_person(random_release(people=80, seed=14), state=state)
    same_date = pl.lit(state["as_of_date"][0])  # most rows changed, the date not: still rewritten whole
    assert journeys_change(redrawn.with_columns(as_of_date=same_date), redrawn_state, state) is None


def test_the_linking_step_reads_only_the_person_columns_its_join_checks_need():
    """`deidentify_linking` loaded every released person table whole to check the lookups' joins; it
    asks the IO manager for the join columns only, and the orphan counts are those of whole tables."""
    from datafirst_assets.defs.deidentify import deidentify_linking_tables
    from datafirst_assets.deidentify.release import linking_join_columns, linking_orphans
    from datafirst_assets.sources.registry import SOURCES

    release = random_release(people=80, seed=2)
    # a lookup row and a case link that find no released row: the counts have something to count
    lookup = pl.concat([release[LOOKUP], release[LOOKUP].head(1).with_columns(
        dataset_person_id=pl.lit(10**7, dtype=release[LOOKUP].schema["dataset_person_id"]))])
    links = release[("linking", "case_lookup")].with_columns(
        defendant_case_id_hash=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("0" * 64))
        .otherwise(pl.col("defendant_case_id_hash")))
    linking = {"xjs_lookup": lookup, "case_lookup": links}
    persons = {s.key: release[(s.key, s.person_table.name)] for s in SOURCES.values()}
    narrow = {k: frame.select(linking_join_columns(k)) for k, frame in persons.items()}
    counts = linking_orphans(linking, persons)
    assert linking_orphans(linking, narrow) == counts and sum(counts.values()) >= 2
    inputs = deidentify_linking_tables.node_def.input_dict
    for key in SOURCES:
        assert inputs[f"persons__{key}"].metadata["columns"] == list(linking_join_columns(key))


def test_the_digest_pass_gives_each_persons_latest_contact_the_as_of_date_is_taken_from():
    """The digest query also gives each person's latest contact date (the table's `last_contact_date`),
    so the as-of date (the latest of them) needs no second pass joining every contact row to the
    lookup; the digest itself is what it was (the stored states stay valid)."""
    release = random_release(people=80, seed=13)
    conn, selects = _in_duckdb(release)
    digests = pl.from_arrow(conn.sql(digest_sql(selects)).to_arrow_table())
    journeys = person_journeys(release)
    latest = journeys.select(PERSON, pl.col("last_contact_date").alias(LATEST)).sort(PERSON)
    assert digests.select(PERSON, LATEST).sort(PERSON).equals(latest)
    assert digests.drop(LATEST).sort(PERSON).equals(journeys_by_person(release)[1].select(digests.drop(LATEST).columns).sort(PERSON))
    assert journeys["as_of_date"][0] == latest[LATEST].max()
