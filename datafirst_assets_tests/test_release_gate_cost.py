"""What the release step spends no more on, and the guarantees that must survive it.

* A changed table is read from the warehouse once (its gates, checksum and file), not once for its
  gates and again for its file.
* A table whose very content the warehouse validated, every row, against its contract when it wrote
  it (the rules of its release schema) is not validated again; changed after that write, it is.
* Each dataset's raw identifiers are read as the scan reads them (series), without Python sets.
* The PII scan leaves out keyed-hash columns only when that cannot change its findings: their
  contract holds them to 64 hex and no raw identifier of the dataset has that shape.
* Whatever is skipped, a row carrying a raw identifier is refused and nothing is published: an old,
  unchanged row with an identifier that arrived in a new extract, or a new row with an old one.
"""

import polars as pl
from dagster import DagsterInstance

from datafirst_assets.deidentify.pii_gate import scan_table
from datafirst_assets.deidentify.release_spec import release_tables
from datafirst_assets.deidentify.schemas import HEX_HASH, release_schema
from datafirst_assets.contracts.core import validate_table
from datafirst_assets.release.gates import HASHED_ROLES, hash_shaped_identifier, scanned_columns
from datafirst_assets.release.publish import latest_file
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets_tests.release_fixtures import release_frames
from datafirst_assets_tests.test_gates import _failure_message, _publish, _release_warehouse
from datafirst_assets_tests.test_unchanged_steps import _publish_with_catalogues, _release_metadata
from datafirst_assets.deidentify.pii_gate import RawIdentifiers

FLATFILE = "deidentified_magistrates.hocas_flatfile"


def test_the_hashed_roles_are_the_columns_the_contract_holds_to_64_hex():
    for spec in release_tables().values():
        schema = release_schema(spec)
        for column in spec.columns:
            hex_checked = any(check.name == "str_matches" and check.statistics.get("pattern") == HEX_HASH
                              for check in schema.columns[column.name].checks)
            assert hex_checked == (column.role in HASHED_ROLES), (spec.source, spec.name, column.name)


def test_the_scan_without_hash_columns_finds_what_the_full_scan_finds():
    tables = release_frames(rows=40)
    flatfile = tables[("magistrates", "hocas_flatfile")]
    some_hash = flatfile["case_id_hash"][0]
    known = RawIdentifiers(names={"WHITFORD", "CONVICTED"}, system_ids={"CASE00003"},
                           column_names={"surname"})
    planted = flatfile.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("WHITFORD"))
                                    .otherwise(pl.col("court_code")).alias("court_code"),
                                    pl.lit("A1234BC").alias("plea"))
    for key, frame in [*tables.items(), (("magistrates", "hocas_flatfile"), planted)]:
        spec = release_tables()[key]
        contract = validate_table(frame, release_schema(spec))
        assert contract.passed
        full = scan_table(".".join(key), frame, known, codes=spec.code_lists)
        assert scan_table(".".join(key), scanned_columns(frame, spec, contract, False), known,
                          codes=spec.code_lists) == full
    # a raw id shaped like a keyed hash: every column is scanned, and the hash column's value is found
    shaped = RawIdentifiers(system_ids={some_hash.upper()})
    assert hash_shaped_identifier(shaped) and not hash_shaped_identifier(known)
    spec = release_tables()[("magistrates", "hocas_flatfile")]
    contract = validate_table(flatfile, release_schema(spec))
    found = scan_table("m.f", scanned_columns(flatfile, spec, contract, True), shaped, codes=spec.code_lists)
    assert [(f.column, f.identifier) for f in found] == [("case_id_hash", "system_id")]


def _refused_and_nothing_published(tmp_path, published: str, result) -> str:
    assert not result.success
    releases = tmp_path / "releases"
    assert latest_file(releases, "deidentified").read_text().strip() == published
    assert sorted(p.name for p in releases.iterdir() if p.is_dir()) == [published]  # no new folder, no spill
    return _failure_message(result)


def test_a_raw_id_shaped_like_a_keyed_hash_in_a_hash_column_is_refused(tmp_path):
    _release_warehouse(tmp_path)
    published = _publish(tmp_path)
    assert published.success
    release_id = latest_file(tmp_path / "releases", "deidentified").read_text().strip()
    with warehouse_cursor(tmp_path / "warehouse.duckdb") as conn:
        (value,) = conn.execute(f"select case_id_hash from {FLATFILE} where estimated_defendant_id = 2").fetchone()
        # a source system whose case ids are 64 hex characters (the key-derived hash of another case)
        conn.execute("update staged_magistrates.hocas_flatfile set case_id = ? where defendant_case_id = 'DC0001'",
                     [value.upper()])
    message = _refused_and_nothing_published(tmp_path, release_id, _publish(tmp_path))
    assert "magistrates.hocas_flatfile.case_id_hash: system_id in 1 row(s)" in message


def test_an_old_row_with_a_new_identifier_and_a_new_row_with_an_old_one_are_refused(tmp_path):
    _release_warehouse(tmp_path)
    with warehouse_cursor(tmp_path / "warehouse.duckdb") as conn:
        conn.execute(f"update {FLATFILE} set court_code = 'ZEBEDEE' where estimated_defendant_id = 2")
    first = _publish(tmp_path)
    assert first.success
    release_id = latest_file(tmp_path / "releases", "deidentified").read_text().strip()
    database = tmp_path / "warehouse.duckdb"
    with warehouse_cursor(database) as conn:
        # a new extract names someone ZEBEDEE: the released row did not change, the identifiers did
        conn.execute("insert into staged_magistrates.hocas_flatfile select * replace ('2024-04-30' as extract_date, "
                     "'DC0009' as defendant_case_id, 'ZEBEDEE' as surname) from staged_magistrates.hocas_flatfile "
                     "where defendant_case_id = 'DC0003'")
    message = _refused_and_nothing_published(tmp_path, release_id, _publish(tmp_path))
    assert "magistrates.hocas_flatfile.court_code: name in 1 row(s)" in message
    with warehouse_cursor(database) as conn:
        conn.execute("delete from staged_magistrates.hocas_flatfile where defendant_case_id = 'DC0009'")
        # a new released row carrying a name every earlier release was scanned against
        conn.execute(f"insert into {FLATFILE} select * replace (repeat('ab', 32) as defendant_case_id_hash, "
                     f"'ADEYEMI' as offence_code) from {FLATFILE} where estimated_defendant_id = 2")
    message = _refused_and_nothing_published(tmp_path, release_id, _publish(tmp_path))
    assert "magistrates.hocas_flatfile.offence_code: name in 1 row(s)" in message


def test_a_changed_table_is_read_once_for_its_gates_checksum_and_file(tmp_path):
    _release_warehouse(tmp_path)
    instance = DagsterInstance.ephemeral()
    assert _publish_with_catalogues(tmp_path, instance).success
    changed = {"deidentified_magistrates.hocas_flatfile": "court_code = 'B07'",
               "deidentified_magistrates.hocas_all_offence": "offence_group = 'DRUGS'",
               "deidentified_crown_court.xhibit_flatfile": "case_type = 'X'"}
    with warehouse_cursor(tmp_path / "warehouse.duckdb") as conn:
        for table, assignment in changed.items():
            conn.execute(f"update {table} set {assignment}")
    second = _publish_with_catalogues(tmp_path, instance)
    assert second.success
    # more changed tables than are held in memory at once: each still read once, not again for its file
    assert _release_metadata(second)["tables_read"] == len(changed)
    assert not [p for p in (tmp_path / "releases").iterdir() if p.name.startswith(".")]  # the spill is gone


def _validated_by_the_gate(monkeypatch) -> list[str]:
    """The names of the schemas the publish gate validates tables against, as it does."""
    import datafirst_assets.release.gates as gates

    names, validate = [], gates.validate_table
    monkeypatch.setattr(gates, "validate_table", lambda frame, schema: names.append(schema.name) or validate(frame, schema))
    return names


def _gates_by_table(manifest: dict) -> dict:
    """Each table's gate results, less its Dagster check results (a fresh instance has none)."""
    return {(t["source"], t["table"]): {k: v for k, v in t["gates"].items() if k != "checks"} for t in manifest["tables"]}


def test_a_table_validated_as_it_was_written_is_not_validated_again_and_the_manifest_is_the_same(tmp_path, monkeypatch):
    from datafirst_assets_tests.test_gates import _deidentify_run
    from datafirst_assets_tests.test_deidentify import magistrates_extract
    from datafirst_assets_tests.test_unchanged_steps import _manifest

    _release_warehouse(tmp_path)
    instance = DagsterInstance.ephemeral()
    # magistrates' tables stored by their asset: the IO manager validates every row before it writes them
    assert _deidentify_run(tmp_path, magistrates_extract(), instance=instance).success
    validated = _validated_by_the_gate(monkeypatch)
    published = _publish(tmp_path, instance)
    assert published.success
    magistrates = {f"magistrates_{name}" for source, name in release_tables() if source == "magistrates"}
    assert not magistrates & set(validated)  # their contract holds as written: not validated a second time
    assert len(validated) == len(release_tables()) - len(magistrates)  # the others' writes recorded nothing
    assert _release_metadata(published)["contracts_held_as_written"] == len(magistrates)
    held = _manifest(tmp_path)
    # the same gates, release id and files as a release that validates every table (no write on record)
    validated.clear()
    (tmp_path / "releases" / "LATEST_deidentified").unlink()
    assert _publish(tmp_path, DagsterInstance.ephemeral()).success
    assert magistrates <= set(validated)
    again = _manifest(tmp_path)
    assert again["release_id"] == held["release_id"]
    assert _gates_by_table(again) == _gates_by_table(held)
    strip = lambda m: [{k: v for k, v in t.items() if k != "gates"} for t in m["tables"]]  # noqa: E731
    assert strip(again) == strip(held)


def test_a_table_changed_after_its_validated_write_is_validated_again_and_refused_if_broken(tmp_path, monkeypatch):
    from datafirst_assets_tests.test_gates import _deidentify_run
    from datafirst_assets_tests.test_deidentify import magistrates_extract

    _release_warehouse(tmp_path)
    instance = DagsterInstance.ephemeral()
    assert _deidentify_run(tmp_path, magistrates_extract(), instance=instance).success
    with warehouse_cursor(tmp_path / "warehouse.duckdb") as conn:  # by hand, after the write: not a hash
        conn.execute(f"update {FLATFILE} set defendant_case_id_hash = 'not-a-hash' where rowid = 0")
    validated = _validated_by_the_gate(monkeypatch)
    result = _publish(tmp_path, instance)
    assert "magistrates_hocas_flatfile" in validated
    assert not result.success and "contract magistrates.hocas_flatfile" in _failure_message(result)
    assert not latest_file(tmp_path / "releases", "deidentified").exists()


def test_only_content_validated_against_the_release_schemas_very_rules_holds_without_validating():
    from dataclasses import replace

    from dagster import AssetKey

    from datafirst_assets.contracts.registry import contract_for, release_spec_of
    from datafirst_assets.release.gates import validated_against_release_schema
    from datafirst_assets.warehouse.content import content_of

    spec = release_tables()[("magistrates", "hocas_flatfile")]
    key = AssetKey(["deidentified", "magistrates", "hocas_flatfile"])
    contract, contract_spec = contract_for(key).name, release_spec_of(key)
    written = content_of("fingerprint", contract)
    assert validated_against_release_schema(contract, contract_spec, spec, "fingerprint", [None, written])
    assert not validated_against_release_schema(contract, contract_spec, spec, "other content", [written])
    assert not validated_against_release_schema(contract, contract_spec, spec, "fingerprint", [None])
    assert not validated_against_release_schema(contract, contract_spec, spec, "missing", [content_of("missing", contract)])
    assert not validated_against_release_schema(None, None, spec, "fingerprint", [written])
    # a contract made from another spec (other rules: no unique key) vouches for nothing
    assert not validated_against_release_schema(contract, replace(contract_spec, unique_key=()), spec, "fingerprint",
                                                [written])
    assert release_spec_of(AssetKey(["linkage", "xjs", "lookup"])) is None
    # every de-identified and synthetic contract is its spec's release schema (the registry builds it so)
    for kind in ("deidentified", "synthetic"):
        for (source, name), table in release_tables().items():
            table_key = AssetKey([kind, source, name])
            assert release_spec_of(table_key) == table
            assert [c.name for c in contract_for(table_key).columns.values()] == list(table.column_names)


def test_identifiers_read_as_series_only_find_what_the_sets_find_and_cannot_be_merged():
    import pytest

    from datafirst_assets.deidentify.release import deidentify_source
    from datafirst_assets.deidentify.pii_gate import raw_identifiers
    from datafirst_assets.sources.registry import SOURCES
    from datafirst_assets.release.gates import _dataset_identifiers, _without_column_names
    from datafirst_assets_tests.test_deidentify import magistrates_extract

    extract, source = magistrates_extract(), SOURCES["magistrates"]
    with_sets, series_only = raw_identifiers(source, extract), raw_identifiers(source, extract, sets=False)
    assert series_only.series_only and not (series_only.names or series_only.addresses or series_only.system_ids)
    for kind in ("name", "address", "system_id"):
        assert sorted(series_only.series(kind).to_list()) == sorted(with_sets.series(kind).to_list())
        assert series_only.series(kind).len() > 0
    flatfile = deidentify_source(source, extract).tables["hocas_flatfile"]
    planted = flatfile.with_columns(pl.lit("WHITFORD").alias("court_code"), pl.lit("CASE00001").alias("plea"),
                                    pl.lit("12 HIGH STREET").alias("outcome"))
    spec = release_tables()[("magistrates", "hocas_flatfile")]
    for frame in (flatfile, planted):  # as the gates scan a table and the catalogues (`_without_column_names`)
        for known in (_dataset_identifiers("magistrates", {"magistrates": series_only}),
                      _without_column_names(series_only)):
            same = (_dataset_identifiers("magistrates", {"magistrates": with_sets}) if known.column_names
                    else _without_column_names(with_sets))
            assert scan_table("m.f", frame, known, codes=spec.code_lists) == scan_table("m.f", frame, same,
                                                                                      codes=spec.code_lists)
    assert {f.identifier for f in scan_table("m.f", planted, series_only)} >= {"name", "system_id", "address"}
    with pytest.raises(ValueError):
        RawIdentifiers().update(series_only)


def _identifiers_of_every_staged_row(conn, source) -> RawIdentifiers:
    """What the gate compared with before identifiers were stored: every staged row read and normalised."""
    from datafirst_assets.deidentify.pii_gate import identifying_columns, raw_identifiers

    frames = {t.name: pl.from_arrow(conn.sql(f"select {', '.join(identifying_columns(t))} from "
                                             f"staged_{source.key}.{t.name}").to_arrow_table()) for t in source.tables}
    return raw_identifiers(source, frames, sets=False)


def _same_identifiers(found: RawIdentifiers, expected: RawIdentifiers) -> bool:
    return found.column_names == expected.column_names and all(
        sorted(found.series(kind).to_list()) == sorted(expected.series(kind).to_list())
        for kind in ("name", "address", "system_id"))


def test_stored_identifiers_are_every_staged_rows_as_partitions_are_added_changed_and_removed(tmp_path, monkeypatch):
    import datafirst_assets.deidentify.pii_gate as pii_gate
    from datafirst_assets.deidentify.pii_gate import stored_identifiers
    from datafirst_assets.sources.registry import SOURCES

    _release_warehouse(tmp_path)
    source, staged = SOURCES["magistrates"], "staged_magistrates.hocas_flatfile"
    with warehouse_cursor(tmp_path / "warehouse.duckdb") as conn:
        parts = conn.execute(f"select count(distinct extract_date) from {staged}").fetchall()[0][0]
        found, read = stored_identifiers(conn, source)
        assert read == parts * len(source.tables) and _same_identifiers(found, _identifiers_of_every_staged_row(conn, source))
        found, read = stored_identifiers(conn, source)  # nothing staged since: nothing read
        assert read == 0 and _same_identifiers(found, _identifiers_of_every_staged_row(conn, source))
        # a new extract: only its partition is read, and its names are among the identifiers
        conn.execute(f"insert into {staged} select * replace ('2024-04-30' as extract_date, 'DC0009' as defendant_case_id, "
                     f"'ZEBEDEE' as surname) from {staged} where defendant_case_id = 'DC0003'")
        found, read = stored_identifiers(conn, source)
        assert read == 1 and "ZEBEDEE" in found.series("name").to_list()
        assert _same_identifiers(found, _identifiers_of_every_staged_row(conn, source))
        # a stored partition changed (a name corrected in place): made again from every staged row
        conn.execute(f"update {staged} set surname = 'QUILLFEATHER' where defendant_case_id = 'DC0001'")
        found, read = stored_identifiers(conn, source)
        assert read == sum(conn.execute(f"select count(distinct extract_date) from staged_magistrates.{t.name}").fetchall()[0][0]
                           for t in source.tables)  # every staged partition read again
        assert "QUILLFEATHER" in found.series("name").to_list()
        assert _same_identifiers(found, _identifiers_of_every_staged_row(conn, source))
        # a partition gone: its values go with it
        conn.execute(f"delete from {staged} where extract_date = '2024-04-30'")
        found, read = stored_identifiers(conn, source)
        assert "ZEBEDEE" not in found.series("name").to_list()
        assert _same_identifiers(found, _identifiers_of_every_staged_row(conn, source))
        # other normalising code: nothing stored is taken
        monkeypatch.setattr(pii_gate, "_normalising_version", lambda: "other")
        assert stored_identifiers(conn, source)[1] == parts * len(source.tables)


def test_a_runs_second_release_takes_the_staged_partitions_its_first_hashed_and_the_next_run_hashes_again(
        tmp_path, monkeypatch):
    """Both releases of a run compare with every dataset's raw identifiers: the second takes the staged
    partitions' contents the first hashed in this run, and finds the same values; a later run (after a
    new extract with a new name) hashes them again and finds that name; no run given, every call hashes."""
    import datafirst_assets.deidentify.pii_gate as pii_gate
    from datafirst_assets.deidentify.pii_gate import stored_identifiers
    from datafirst_assets.sources.registry import SOURCES

    _release_warehouse(tmp_path)
    database = str((tmp_path / "warehouse.duckdb").resolve())
    source, staged = SOURCES["magistrates"], "staged_magistrates.hocas_flatfile"
    hashed = []
    real = pii_gate.partition_contents
    monkeypatch.setattr(pii_gate, "partition_contents", lambda conn, src: hashed.append(src.key) or real(conn, src))
    with warehouse_cursor(database) as conn:
        first, _ = stored_identifiers(conn, source, verified=(database, "run-1"))  # the de-identified release
        second, read = stored_identifiers(conn, source, verified=(database, "run-1"))  # the synthetic one
        assert hashed == ["magistrates"] and read == 0
        assert _same_identifiers(first, second) and _same_identifiers(second, _identifiers_of_every_staged_row(conn, source))
        # between runs a new extract brings a new name: the next run hashes the partitions again and finds it
        conn.execute(f"insert into {staged} select * replace ('2024-04-30' as extract_date, 'DC0009' as defendant_case_id, "
                     f"'ZEBEDEE' as surname) from {staged} where defendant_case_id = 'DC0003'")
        found, read = stored_identifiers(conn, source, verified=(database, "run-2"))
        assert hashed == ["magistrates"] * 2 and read == 1 and "ZEBEDEE" in found.series("name").to_list()
        assert _same_identifiers(found, _identifiers_of_every_staged_row(conn, source))
        assert list(pii_gate._VERIFIED_PARTS) == [(database, "run-2", "magistrates")]  # the earlier run's let go
        stored_identifiers(conn, source)
        stored_identifiers(conn, source)
        assert hashed == ["magistrates"] * 4


def _dates_of_birth_of_every_staged_row(database, spec, frame: pl.DataFrame) -> pl.Series:
    """What the gate compared with before: every staged row read, every id hashed, the last row's kept."""
    from datafirst_assets.deidentify.keys import keyed_hash

    key = spec.column(spec.primary_key)
    with warehouse_cursor(database) as conn:
        staged = pl.from_arrow(conn.sql(f"select {key.staged} as id, dob from "
                                        f"staged_{spec.source}.{spec.name}").to_arrow_table())
    staged = staged.select(keyed_hash(staged["id"], namespace=key.hash_namespace).alias(key.name), "dob")
    staged = staged.unique(key.name, keep="last")
    return frame.select(key.name).join(staged, on=key.name, how="left", maintain_order="left")["dob"]


def test_each_released_rows_date_of_birth_is_its_last_staged_rows_whether_its_id_was_hashed_before_or_not(tmp_path):
    from datafirst_assets.defs.release import _dates_of_birth, _dob_column, _rows_dates_of_birth
    from datafirst_assets.defs.resources import Warehouse

    _release_warehouse(tmp_path)
    database = tmp_path / "warehouse.duckdb"
    spec = release_tables()[("magistrates", "hocas_flatfile")]
    assert _dob_column(spec) == "dob"
    staged = "staged_magistrates.hocas_flatfile"
    with warehouse_cursor(database) as conn:
        # a later extract corrects one date of birth and loses another's: the last staged row's counts
        conn.execute(f"insert into {staged} select * replace ('2024-04-30' as extract_date, date '1971-02-03' as "
                     f"dob) from {staged} where defendant_case_id = 'DC0001'")
        conn.execute(f"insert into {staged} select * replace ('2024-04-30' as extract_date, null as dob) "
                     f"from {staged} where defendant_case_id = 'DC0002'")
        frame = pl.from_arrow(conn.sql(f"select * from {FLATFILE}").to_arrow_table())
    warehouse = Warehouse(database=str(database))
    expected = _dates_of_birth_of_every_staged_row(database, spec, frame)
    assert expected.null_count() < expected.len() and expected.n_unique() > 2
    # ids never hashed before (hashed here, and stored), then ids found among the stored pseudonyms
    assert _dates_of_birth(warehouse, spec, frame).to_list() == expected.to_list()
    assert _rows_dates_of_birth(warehouse, spec, frame).to_list() == expected.to_list()
    # every id hashed, and no released date is its row's date of birth (counted in DuckDB): none to compare
    assert not frame.join(pl.DataFrame({"defendant_case_id_hash": frame["defendant_case_id_hash"], "dob": expected}),
                          on="defendant_case_id_hash").filter(pl.any_horizontal(
                              pl.col(c) == pl.col("dob") for c, t in frame.schema.items() if t == pl.Date)).height
    assert _dates_of_birth(warehouse, spec, frame) is None


def test_a_tables_fingerprint_read_by_its_runs_contract_check_is_taken_by_that_runs_later_steps_only(tmp_path):
    from dagster import materialize

    from datafirst_assets.warehouse.content import checked_fingerprints, table_fingerprint
    from datafirst_assets.warehouse.io_manager import StoredTable
    from datafirst_assets.warehouse.unchanged import inputs_fingerprint
    from datafirst_assets_tests.warehouse_tables import checked_scored_pairs

    database = str(tmp_path / "w.duckdb")
    pairs, checks, resources = checked_scored_pairs(database)
    result = materialize([pairs, *checks], resources=resources)
    assert result.success
    table = StoredTable(database, "linkage_magistrates", "scored_pairs")
    with warehouse_cursor(database) as conn:
        stored = table_fingerprint(conn, table)
    memo = checked_fingerprints([table], result.run_id)
    assert memo == {(database, table.select_sql()): stored}  # what the check read is what the table holds
    assert inputs_fingerprint({"t": table}, memo=dict(memo)) == inputs_fingerprint({"t": table})
    # another run (one that did not check the table), or a part of the table: hashed as before
    assert checked_fingerprints([table], "another-run") == {}
    assert checked_fingerprints([StoredTable(database, "linkage_magistrates", "scored_pairs", columns=("record_id_l",))],
                                result.run_id) == {}


def test_dates_of_birth_counted_in_duckdb_still_refuse_a_changed_row_that_shows_one(tmp_path, monkeypatch):
    """Each released date is compared with its row's date of birth in DuckDB (no staged id's date of
    birth brought into polars) while none equals one; a changed row showing its own date of birth is
    still refused, with the scan's finding, and nothing is published."""
    import datafirst_assets.defs.release as release_defs

    _release_warehouse(tmp_path)
    assert _publish(tmp_path).success  # every staged id hashed once (the pseudonym cache)
    counted, count = [], release_defs._no_date_is_its_rows_birth_date
    monkeypatch.setattr(release_defs, "_no_date_is_its_rows_birth_date",
                        lambda *args: counted.append(count(*args)) or counted[-1])
    database = tmp_path / "warehouse.duckdb"
    with warehouse_cursor(database) as conn:
        conn.execute(f"update {FLATFILE} set court_code = 'B07' where estimated_defendant_id = 2")
    assert _publish(tmp_path).success
    assert counted == [True]  # the changed flatfile's dates: none is a date of birth, counted in DuckDB
    releases = tmp_path / "releases"
    release_id, folders = latest_file(releases, "deidentified").read_text().strip(), sorted(releases.iterdir())
    with warehouse_cursor(database) as conn:  # the row's own date of birth (1990-06-15) as an event date
        conn.execute(f"update {FLATFILE} set sentence_date = date '1990-06-15' where estimated_defendant_id = 1")
    refused = _publish(tmp_path)
    assert not refused.success
    assert latest_file(releases, "deidentified").read_text().strip() == release_id
    assert sorted(releases.iterdir()) == folders  # no new folder, no spill
    message = _failure_message(refused)
    assert counted == [True, False]
    assert "magistrates.hocas_flatfile.sentence_date: date_of_birth in 2 row(s)" in message


def test_the_staged_tables_are_hashed_once_for_the_gate_fingerprints_and_the_raw_identifiers(tmp_path, monkeypatch):
    """A de-identified release passes over each staged table once: the pass that hashes its partitions'
    identifying columns (the raw identifiers' `partition_contents`) also sums its whole rows, which give
    the table's fingerprint in the gate fingerprints (no `table_fingerprint` of a staged table). The
    fingerprints and partition contents are those the two separate passes gave."""
    import datafirst_assets.deidentify.pii_gate as pii_gate
    import datafirst_assets.warehouse.unchanged as unchanged
    from datafirst_assets.defs.release import _staged_fingerprints, _staged_tables
    from datafirst_assets.sources.registry import SOURCES
    from datafirst_assets.warehouse.unchanged import inputs_fingerprint

    _release_warehouse(tmp_path)
    database = str(tmp_path / "warehouse.duckdb")
    with warehouse_cursor(database) as conn:  # a second extract date, and a table never staged (skipped)
        conn.execute("insert into staged_magistrates.hocas_flatfile select * replace ('2024-04-30' as extract_date, "
                     "'DC0009' as defendant_case_id) from staged_magistrates.hocas_flatfile where defendant_case_id = 'DC0003'")
    staged = {f"{d}.{k}": t for d in SOURCES for k, t in _staged_tables(database, d).items()}
    separately = {}
    inputs_fingerprint(staged, memo=separately)
    with warehouse_cursor(database) as conn:
        parts = {d: pii_gate.partition_contents(conn, SOURCES[d]) for d in SOURCES}
    together = {}
    _staged_fingerprints(database, list(SOURCES), together, (database, "run-1"))
    assert together == {k: v for k, v in separately.items() if v != "missing"} and together
    assert all(pii_gate._VERIFIED_PARTS[(database, "run-1", d)] == parts[d] for d in SOURCES)

    hashed_tables, hashed_parts = [], []
    real_fingerprint, real_parts = unchanged.table_fingerprint, pii_gate.partition_contents
    monkeypatch.setattr(unchanged, "table_fingerprint",
                        lambda conn, table: hashed_tables.append(table.schema) or real_fingerprint(conn, table))
    monkeypatch.setattr(pii_gate, "partition_contents",
                        lambda conn, source: hashed_parts.append(source.key) or real_parts(conn, source))
    assert _publish(tmp_path).success
    assert hashed_parts == [] and not [s for s in hashed_tables if s.startswith("staged_")]
