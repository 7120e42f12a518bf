"""Cross-justice ids carried forward against the stored lookup in DuckDB (``xjs_carry``) give the
lookup, change log and stability counts the whole-frame polars path gives, while only the records
of clusters whose ids may change reach Python and only records not stored before are hashed."""

from __future__ import annotations

import random

import duckdb
import polars as pl
import pytest

from datafirst_assets.defs import xjs as xjs_defs
from datafirst_assets.linkage import xjs_incremental as xjs_carry
from datafirst_assets.linkage.xjs import (
    LEVELS,
    check_lookup_invariants,
    carry_forward_xjs_ids,
    unchanged_xjs_persons_kept,
    xjs_id_change_history,
)


def _raw(records: list[tuple[str, str, str]], labels: dict[str, list[int]]) -> pl.DataFrame:
    """A lookup before carrying: records (dataset, id, person) and a dense cluster id per level."""
    return pl.DataFrame({
        "source_dataset": [r[0] for r in records], "record_id": [r[1] for r in records],
        "person_id_dataset": [r[2] for r in records],
        **{f"person_id_{lv}": pl.Series(labels[lv], dtype=pl.Int64) for lv in LEVELS},
    }).sort("source_dataset", "record_id")


def _world(seed: int, n: int = 400) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """(raw lookup of an earlier run, raw lookup now, records new now): a few records new, gone
    or moved, some clusters merged or split, and every cluster renumbered."""
    rng = random.Random(seed)
    records = [(rng.choice(["prison", "probation", "magistrates"]), str(i), "") for i in range(n)]
    records = [(d, i, f"{d}:{int(i) // 2}") for d, i, _ in records]
    before = {lv: [int(r[1]) // (2 + k) for r in records] for k, lv in enumerate(LEVELS)}
    now_records = [r for r in records if rng.random() > 0.03]  # some gone
    new = [(rng.choice(["prison", "civil"]), f"n{i}", f"new:{i}") for i in range(rng.randint(1, 12))]
    now = {}
    for k, lv in enumerate(LEVELS):
        label = {r[1]: c for r, c in zip(records, before[lv])}
        ids = [label[r[1]] for r in now_records]
        for _ in range(3):  # merges
            a, b = rng.sample(sorted(set(ids)), 2)
            ids = [a if c == b else c for c in ids]
        for _ in range(3):  # splits and moves
            i = rng.randrange(len(ids))
            ids[i] = rng.choice([max(ids) + 1, rng.choice(ids)])
        ids += [rng.choice([rng.choice(ids), max(ids) + 1 + j]) for j in range(len(new))]
        order = sorted(set(ids))  # renumbered densely in another order
        shuffled = order[:]
        rng.shuffle(shuffled)
        now[lv] = [dict(zip(order, range(1, len(order) + 1)))[dict(zip(order, shuffled))[c]] for c in ids]
    return _raw(records, before), _raw(now_records + new, now), len(new)


def _stored(conn: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    arrow = frame.to_arrow()  # noqa: F841 (SQL below)
    conn.execute(f"create table {name} as select * from arrow")


@pytest.mark.parametrize("seed", range(6))
def test_carrying_in_the_database_equals_carrying_whole_frames(seed, monkeypatch):
    earlier, now, new_records = _world(seed)
    # the stored state of the earlier run, and of one incremental run after it (history rows)
    first, _ = carry_forward_xjs_ids(earlier)
    previous = xjs_defs.add_record_hashes(first)
    history = xjs_id_change_history(None, carry_forward_xjs_ids(earlier, previous)[1], run_id="r1")

    expected, changes = carry_forward_xjs_ids(now, previous, history)
    expected = xjs_defs.add_record_hashes(expected, previous)
    kept = unchanged_xjs_persons_kept(previous, expected)

    hashed: list[int] = []
    real = xjs_carry.keyed_hash
    monkeypatch.setattr(xjs_carry, "keyed_hash", lambda values, **kw: hashed.append(values.len()) or real(values, **kw))
    with duckdb.connect() as conn:
        _stored(conn, "lookup", previous)
        _stored(conn, "history", history)
        assert xjs_carry.stored_lookup_usable(conn, "lookup")
        scratch = xjs_carry.attach_scratch(conn)
        carried = xjs_carry.carry_forward_stored(conn, scratch, now, "lookup", "history")
        got = conn.sql(carried.sql).pl()
        xjs_carry.detach_scratch(conn, scratch)
    assert got.equals(expected.select(got.columns))
    assert carried.changes.equals(changes)
    assert carried.kept == kept
    # the carried lookup's persons at each level, counted by the carry, not over every record
    assert carried.persons == {lv: got[f"person_id_{lv}"].n_unique() for lv in LEVELS}
    # only the new records were hashed (plus one probe per dataset stored before)
    assert carried.stats["records_rehashed"] == new_records
    assert sum(hashed) == new_records + previous["source_dataset"].n_unique()
    # only the records of unsettled clusters went through Python
    for level in LEVELS:
        assert 0 < carried.stats[f"records_recarried_{level}"] < now.height // 2


def test_an_unchanged_lookup_carries_nothing_in_python():
    earlier, _, _ = _world(1)
    previous = xjs_defs.add_record_hashes(carry_forward_xjs_ids(earlier)[0])
    renumbered = earlier.with_columns(pl.col(f"person_id_{lv}") * 7 for lv in LEVELS)
    with duckdb.connect() as conn:
        _stored(conn, "lookup", previous)
        scratch = xjs_carry.attach_scratch(conn)
        carried = xjs_carry.carry_forward_stored(conn, scratch, renumbered, "lookup", None)
        got = conn.sql(carried.sql).pl()
    assert got.equals(previous.select(got.columns))
    assert carried.persons == {lv: previous[f"person_id_{lv}"].n_unique() for lv in LEVELS}
    assert carried.changes.is_empty()
    assert carried.stats == {**{f"records_recarried_{lv}": 0 for lv in LEVELS}, "records_rehashed": 0}


def test_invariant_problems_in_sql_are_those_of_the_polars_check():
    earlier, _, _ = _world(2)
    lookup = xjs_defs.add_record_hashes(carry_forward_xjs_ids(earlier)[0])
    broken = pl.concat([
        lookup.slice(0, 5).with_columns(pl.lit("gone").alias("record_id")),  # rows of no record
        lookup.slice(5).with_columns(  # a person split over two high ids
            pl.when(pl.col("record_id") == lookup["record_id"][6]).then(999_999).otherwise(pl.col("person_id_high"))
            .alias("person_id_high")),
    ]).with_columns(pl.col("person_id_low").cast(pl.Int64))
    records = lookup.select("source_dataset", "record_id")
    expected = check_lookup_invariants(broken, records)
    assert len(expected) >= 4  # duplicates, orphans, unmapped records, a person split over two ids, not nested
    with duckdb.connect() as conn:
        _stored(conn, "lookup", lookup)
        _stored(conn, "broken", broken)
        _stored(conn, "records", records)
        assert xjs_carry.lookup_problems(conn, "lookup", "select * from records") == \
            check_lookup_invariants(lookup, records)
        got = xjs_carry.lookup_problems(conn, "broken", "select * from records")
    # the same problems in the same words (the examples may be other rows of the same kind)
    assert [p.split(", e.g.")[0] for p in got] == [p.split(", e.g.")[0] for p in expected]


def test_invariant_problems_in_sql_count_null_keys_wrong_prefixes_and_repeated_records_as_the_polars_check():
    """The problems counted from one pass each (a count per key joined once to the records, one
    group-by per person) are those of the polars check where keys are null, a person is of another
    dataset, a key is shared by three rows and a record is delivered twice."""
    earlier, _, _ = _world(3)
    lookup = xjs_defs.add_record_hashes(carry_forward_xjs_ids(earlier)[0])
    broken = lookup.with_columns(
        pl.when(pl.int_range(pl.len()) < 2).then(None).otherwise(pl.col("record_id")).alias("record_id"),
        pl.when(pl.int_range(pl.len()) == 9).then(pl.lit("elsewhere:1")).otherwise(pl.col("person_id_dataset"))
        .alias("person_id_dataset"))
    broken = pl.concat([broken, lookup.slice(3, 1), lookup.slice(3, 1)])  # one key on three rows
    records = pl.concat([lookup.select("source_dataset", "record_id"),
                         lookup.slice(4, 1).select("source_dataset", "record_id")])  # a record twice
    expected = check_lookup_invariants(broken, records)
    assert sum(("null" in p) + ("share" in p) + ("not of their dataset" in p) + ("no lookup row" in p)
               for p in expected) == 4, expected
    with duckdb.connect() as conn:
        _stored(conn, "broken", broken)
        _stored(conn, "records", records)
        got = xjs_carry.lookup_problems(conn, "broken", "select * from records")
    assert [p.split(", e.g.")[0] for p in got] == [p.split(", e.g.")[0] for p in expected]


@pytest.mark.parametrize("seed", range(4))
def test_the_carry_does_not_depend_on_the_order_of_the_raw_lookup(seed):
    """The asset hands the carry its raw lookup unsorted (``link_variants(sorted_lookup=False)``):
    the carried lookup, change log and counts are those of the sorted one."""
    earlier, now, _ = _world(seed)
    previous = xjs_defs.add_record_hashes(carry_forward_xjs_ids(earlier)[0])
    results = []
    for raw in (now, now.sample(fraction=1.0, shuffle=True, seed=seed)):
        with duckdb.connect() as conn:
            _stored(conn, "lookup", previous)
            scratch = xjs_carry.attach_scratch(conn)
            carried = xjs_carry.carry_forward_stored(conn, scratch, raw, "lookup", None)
            results.append((conn.sql(carried.sql).pl(), carried.changes, carried.kept, carried.stats))
    (lookup, changes, kept, stats), (shuffled, shuffled_changes, shuffled_kept, shuffled_stats) = results
    assert not now.equals(now.sample(fraction=1.0, shuffle=True, seed=seed))
    assert shuffled.equals(lookup) and shuffled_changes.equals(changes)
    assert (shuffled_kept, shuffled_stats) == (kept, stats)


@pytest.mark.parametrize("seed", range(4))
def test_the_carry_from_stored_keys_and_persons_equals_the_carry_from_the_raw_frame(seed):
    """The asset keeps the records' keys in the database and hands the carry them with the persons'
    cluster ids (``RecordsAndPersons``), not the raw lookup as a frame: the same carried lookup,
    change log and counts."""
    earlier, now, _ = _world(seed)
    previous = xjs_defs.add_record_hashes(carry_forward_xjs_ids(earlier)[0])
    ids = [f"person_id_{lv}" for lv in LEVELS]
    # a raw lookup as `link_variants` makes it: every record has its person's ids (one row per person)
    persons = now.group_by("source_dataset", "person_id_dataset", maintain_order=True).agg(pl.col(ids).first())
    keys = now.select("source_dataset", "record_id", "person_id_dataset")
    raw = keys.join(persons.drop("source_dataset"), on="person_id_dataset", how="left")
    results = []
    for given in ("frame", "parts"):
        with duckdb.connect() as conn:
            _stored(conn, "lookup", previous)
            scratch = xjs_carry.attach_scratch(conn)
            if given == "frame":
                carried = xjs_carry.carry_forward_stored(conn, scratch, raw, "lookup", None)
            else:
                _stored(conn, f"{scratch}.keys", keys)
                parts = xjs_carry.RecordsAndPersons(xjs_carry.KeysInDatabase(f"{scratch}.keys", keys.height), persons)
                carried = xjs_carry.carry_forward_stored(conn, scratch, parts, "lookup", None)
            results.append((conn.sql(carried.sql).pl(), carried.changes, carried.kept, carried.stats))
    (lookup, changes, kept, stats), (from_parts, parts_changes, parts_kept, parts_stats) = results
    assert lookup.height == now.height and changes.height
    assert from_parts.equals(lookup) and parts_changes.equals(changes)
    assert (parts_kept, parts_stats) == (kept, stats)


def test_link_variants_leaves_the_lookup_unsorted_only_when_asked():
    from datafirst_assets.linkage.xjs import link_variants, person_variants, records_with_persons

    records = {"prison": pl.DataFrame({"record_id": [f"r{i}" for i in (9, 3, 7, 1, 5)],
                                       "forename": ["A", "B", "A", "C", "B"], "surname": ["X"] * 5})}
    clusters = {"prison": pl.DataFrame({"record_id": [f"r{i}" for i in (9, 3, 7, 1, 5)],
                                        "prison_person_id": [1, 2, 1, 3, 2]})}
    recs = records_with_persons(records, clusters)
    variants, vmap = person_variants(recs)
    keys = recs.select("source_dataset", "record_id", "person_id_dataset")
    ordered = link_variants(keys, variants, vmap).lookup
    as_joined = link_variants(keys, variants, vmap, sorted_lookup=False).lookup
    assert ordered.get_column("record_id").to_list() == ["r1", "r3", "r5", "r7", "r9"]
    assert as_joined.sort("source_dataset", "record_id").equals(ordered)


def _unsettled_by_definition(pairs: pl.DataFrame, level: str) -> set[str]:
    """The records of clusters (``c``) or previous ids (``p``) not in a one-to-one match, by the
    definition: all of a cluster's records had one previous id, and that id's records are exactly
    the cluster's (a null, a record new or gone, breaks the match)."""
    c, p = f"c_{level}", f"p_{level}"
    def bad(key: str, other: str) -> pl.Series:
        return (pairs.filter(pl.col(key).is_not_null()).group_by(key)
                .agg(pl.col(other).n_unique().alias("n"), pl.col(other).null_count().alias("nulls"))
                .filter((pl.col("n") > 1) | (pl.col("nulls") > 0)).get_column(key))
    return set(pairs.filter(pl.col(c).is_in(bad(c, p).implode()) | pl.col(p).is_in(bad(p, c).implode()))
               .get_column("k").to_list())


@pytest.mark.parametrize("seed", range(8))
def test_unsettled_records_are_those_of_the_definition(seed):
    """``_unsettled`` reduces the records to their (cluster, previous id) pairs before testing the
    match: the records it returns are those of the definition, with records new (no previous id),
    gone (no cluster), moved, merged and split."""
    rng = random.Random(seed)
    rows = []
    for i in range(300):
        c = {lv: rng.choice([None] + list(range(1, 40))) if rng.random() < 0.15 else i // (3 + k)
             for k, lv in enumerate(LEVELS)}
        p = {lv: None if rng.random() < 0.05 else (c[lv] if c[lv] is not None and rng.random() < 0.9
                                                   else rng.randint(1, 120)) for lv in LEVELS}
        rows.append({"k": f"r{i}", **{f"c_{lv}": c[lv] for lv in LEVELS}, **{f"p_{lv}": p[lv] for lv in LEVELS}})
    pairs = pl.DataFrame(rows, schema={"k": pl.String, **{f"{s}_{lv}": pl.Int64 for s in "cp" for lv in LEVELS}})
    with duckdb.connect() as conn:
        scratch = xjs_carry.attach_scratch(conn)
        _stored(conn, f"{scratch}.pairs", pairs)
        got = xjs_carry._unsettled(conn, scratch)
    for lv in LEVELS:
        want = _unsettled_by_definition(pairs, lv)
        assert want and len(want) < pairs.height  # both kinds present
        assert set(got.filter(pl.col("level") == lv).get_column("k").to_list()) == want


def test_invariant_counts_of_several_ids_are_those_of_count_distinct_with_null_ids():
    """``lookup_problems`` counts "more than one id" as min <> max: with null ids among a person's
    or an id's rows (skipped, as count(distinct) skips them) the counts are those of count(distinct)."""
    lookup = pl.DataFrame({
        "source_dataset": ["civil"] * 7,
        "record_id": [str(i) for i in range(7)],
        "record_id_hash": ["h"] * 7,
        "person_id_dataset": ["civil:a", "civil:a", "civil:b", "civil:b", "civil:c", "civil:c", "civil:d"],
        "person_id_high": [1, None, 2, 3, None, None, 4],        # a: one id and a null; b: two ids
        "person_id_medium": [1, 1, 2, None, 5, 6, 4],            # c: two ids; high 4 nested
        "person_id_low": [1, 1, 2, 2, 5, 5, None],
    })
    with duckdb.connect() as conn:
        _stored(conn, "lookup", lookup)
        got = xjs_carry.lookup_problems(conn, "lookup", "select source_dataset, record_id from lookup")
        several = conn.execute("select count(*) filter (where h > 1), count(*) filter (where m > 1), "
                               "count(*) filter (where l > 1) from (select count(distinct person_id_high) h, "
                               "count(distinct person_id_medium) m, count(distinct person_id_low) l "
                               "from lookup group by person_id_dataset)").fetchall()[0]
        nested = [conn.execute(f"select count(*) from (select 1 from lookup group by person_id_{i} "
                               f"having count(distinct person_id_{o}) > 1)").fetchall()[0][0]
                  for i, o in (("high", "medium"), ("medium", "low"))]
    assert several == (1, 1, 0) and nested == [1, 0]  # the world above: b, c; high null over media 5, 6
    expected = [f"{n} per-dataset person(s) map to several person_id_{lv} values"
                for lv, n in zip(("high", "medium", "low"), several) if n]
    expected += [f"{n} {i}-threshold person(s) are split across {o}-threshold persons (not nested)"
                 for (i, o), n in zip((("high", "medium"), ("medium", "low")), nested) if n]
    assert [p for p in got if "null" not in p] == expected
