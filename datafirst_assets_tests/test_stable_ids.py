"""Carrying person ids forward over re-formed clusters, on hand-built clusters."""

from datetime import datetime

import polars as pl

from datafirst_assets.linkage.stable_ids import (
    carry_forward_ids,
    id_change_history,
    next_free_id,
    unchanged_persons_kept,
)


def _previous(persons: dict[int, str]) -> pl.DataFrame:
    """{person id: "abc"} -> one row per record (records are single letters)."""
    rows = [(r, pid) for pid, records in persons.items() for r in records]
    return pl.DataFrame(rows, schema={"record_id": pl.String, "person_id": pl.Int64}, orient="row")


def _clusters(groups: list[str]) -> pl.DataFrame:
    """["abc", "de"] -> record_id, cluster_id with arbitrary labels (as Splink would relabel)."""
    rows = [(r, f"label{9 - i}") for i, records in enumerate(groups) for r in records]
    return pl.DataFrame(rows, schema={"record_id": pl.String, "cluster_id": pl.String}, orient="row")


def _ids(carried) -> dict[str, int]:
    return dict(carried.ids.iter_rows())


def _changes(carried) -> list[tuple]:
    return [tuple(r) for r in carried.changes.iter_rows()]


def test_unchanged_persons_keep_their_ids_and_a_new_person_gets_the_next_id():
    previous = _previous({4: "ab", 9: "cd", 2: "e"})
    carried = carry_forward_ids(previous, _clusters(["e", "ab", "dc", "f"]))
    assert _ids(carried) == {"a": 4, "b": 4, "c": 9, "d": 9, "e": 2, "f": 10}
    assert _changes(carried) == [(None, 10, "new", 1)]
    assert carried.next_id == 11
    assert unchanged_persons_kept(previous, carried.ids) == (3, 3)


def test_merge_keeps_the_id_covering_most_records_and_retires_the_other():
    previous = _previous({5: "abc", 9: "de", 3: "f"})
    carried = carry_forward_ids(previous, _clusters(["abcde", "f"]))
    assert _ids(carried) == {"a": 5, "b": 5, "c": 5, "d": 5, "e": 5, "f": 3}
    assert _changes(carried) == [(9, 5, "merge", 2)]
    # the retired id 9 is still the highest issued: the next new person gets 10, not 9
    assert carried.next_id == 10


def test_split_keeps_the_id_on_the_larger_part_and_mints_one_for_the_other():
    previous = _previous({7: "abcde", 2: "f"})
    carried = carry_forward_ids(previous, _clusters(["de", "abc", "f"]))
    assert _ids(carried) == {"a": 7, "b": 7, "c": 7, "d": 8, "e": 8, "f": 2}
    assert _changes(carried) == [(7, 8, "split", 2)]


def test_merge_and_split_at_once():
    # 1 splits: a,b stay, c joins 2; 3 disappears into 2 as well
    previous = _previous({1: "abc", 2: "de", 3: "f"})
    carried = carry_forward_ids(previous, _clusters(["ab", "cdef"]))
    assert _ids(carried) == {"a": 1, "b": 1, "c": 2, "d": 2, "e": 2, "f": 2}
    assert _changes(carried) == [(1, 2, "moved", 1), (3, 2, "merge", 1)]


def test_ties_are_broken_the_same_way_whatever_the_input_order():
    previous = _previous({8: "ab", 6: "cd", 4: "wxyz"})
    # equal merge: the smaller old id wins; equal split: the half with the smallest record keeps it
    clusters = _clusters(["abcd", "yz", "wx"])
    first = carry_forward_ids(previous, clusters, first_new_id=20)
    assert _ids(first) == {"a": 6, "b": 6, "c": 6, "d": 6, "w": 4, "x": 4, "y": 20, "z": 20}
    for seed in range(5):
        shuffled = carry_forward_ids(previous.sample(fraction=1.0, shuffle=True, seed=seed),
                                     clusters.sample(fraction=1.0, shuffle=True, seed=seed), first_new_id=20)
        assert _ids(shuffled) == _ids(first)
        assert _changes(shuffled) == _changes(first) == [(4, 20, "split", 2), (8, 6, "merge", 2)]


def test_retired_ids_are_never_issued_again():
    # person 12 was retired in an earlier run: it is in the change history, not the clusters
    history = pl.DataFrame({"old_id": [12], "new_id": [None]}, schema={"old_id": pl.Int64, "new_id": pl.Int64})
    previous = _previous({1: "a", 3: "b"})
    first = next_free_id(previous["person_id"], history["old_id"], history["new_id"])
    assert first == 13
    carried = carry_forward_ids(previous, _clusters(["a", "c"]), first_new_id=first)
    assert _ids(carried) == {"a": 1, "c": 13}
    assert _changes(carried) == [(3, None, "retired", 1), (None, 13, "new", 1)]


def test_first_release_numbers_persons_from_one_without_logging_them():
    carried = carry_forward_ids(None, _clusters(["cd", "ab", "e"]))
    assert _ids(carried) == {"a": 1, "b": 1, "c": 2, "d": 2, "e": 3}
    assert carried.changes.is_empty()
    assert carried.ids.schema["person_id"] == pl.Int64


def test_change_history_appends_runs_and_replaces_a_re_executed_run():
    first = carry_forward_ids(_previous({1: "ab"}), _clusters(["a", "b"])).changes
    at = datetime(2024, 1, 1)
    history = id_change_history(None, first, run_id="r1", mode="full", at=at)
    assert history.select("old_id", "new_id", "kind", "run_id").rows() == [(1, 2, "split", "r1")]
    second = carry_forward_ids(_previous({1: "a", 2: "b"}), _clusters(["ab"])).changes
    history = id_change_history(history, second, run_id="r2", mode="incremental", at=at)
    assert history.select("kind", "run_id").rows() == [("split", "r1"), ("merge", "r2")]
    again = id_change_history(history, second, run_id="r2", mode="incremental", at=at)
    assert again.height == 2
