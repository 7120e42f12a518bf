"""The summaries asset keeps the summary of each release table whose inputs did not change
(synthetic/summary_parts.py): not read again, and the document is the one summarising every table gives."""

import polars as pl

from datafirst_assets.synthetic.summaries import SummaryRules, summaries_json, summarise_release
from datafirst_assets.synthetic.summary_parts import (
    drift_measured,
    kept_within_tolerance,
    load_parts,
    save_parts,
    summarise_keeping,
    table_fingerprints,
)
from datafirst_assets.warehouse.io_manager import StoredTable
from datafirst_assets.warehouse.lazy_tables import LoadedOnUse
from datafirst_assets_tests.release_fixtures import release_frames
from datafirst_assets_tests.warehouse_tables import write_table

CHANGED = ("magistrates", "hocas_all_offence")
CHANGED_NAME = ".".join(CHANGED)


def _store(database, frames) -> dict:
    for (dataset, name), frame in frames.items():
        write_table(database, f"deidentified_{dataset}", name, frame)
    return {key: StoredTable(str(database), f"deidentified_{key[0]}", key[1]) for key in frames}


def _summarise(stored, rules, parts):
    tables = LoadedOnUse(stored, keep=2)
    doc, made = summarise_keeping(tables, table_fingerprints(stored, rules), rules, parts)
    return doc, made, tables.loads


def test_unchanged_tables_keep_their_summaries_unread_and_the_document_is_the_full_one(tmp_path):
    database, rules, path = tmp_path / "w.duckdb", SummaryRules(k=2), tmp_path / "summary_parts.json"
    frames = release_frames(rows=40)
    stored = _store(database, frames)
    first, parts, loads = _summarise(stored, rules, load_parts(path))
    assert summaries_json(first) == summaries_json(summarise_release(frames, rules)) and loads >= len(frames)
    save_parts(path, parts)

    changed = {**frames, CHANGED: frames[CHANGED].head(frames[CHANGED].height - 3)}
    write_table(database, "deidentified_magistrates", CHANGED[1], changed[CHANGED])
    again, _, loads = _summarise(stored, rules, load_parts(path))
    assert summaries_json(again) == summaries_json(summarise_release(changed, rules))
    assert summaries_json(again) != summaries_json(first)
    # the changed table, and what its summary reads besides it (its parent); nothing else
    assert 1 <= loads <= 3 < len(frames)

    unchanged, _, loads = _summarise(stored, SummaryRules(k=3), load_parts(path))  # other rules: all again
    assert loads >= len(frames)
    assert summaries_json(unchanged) == summaries_json(summarise_release(changed, SummaryRules(k=3)))


def test_a_summary_that_read_another_table_is_made_again_when_that_one_changes(tmp_path):
    database, rules, path = tmp_path / "w.duckdb", SummaryRules(k=2), tmp_path / "summary_parts.json"
    frames = release_frames(rows=40)
    stored = _store(database, frames)
    _, parts, _ = _summarise(stored, rules, {})
    readers = [name for name, entry in parts["tables"].items() if len(entry["read"]) > 1]
    assert readers  # child tables read their parent
    parent = next(n for n in parts["tables"][readers[0]]["read"] if n != readers[0])
    key = next(k for k in frames if f"{k[0]}.{k[1]}" == parent)
    changed = {**frames, key: frames[key].reverse().head(frames[key].height - 1)}
    write_table(database, f"deidentified_{key[0]}", key[1], changed[key])
    again, _, _ = _summarise(stored, rules, parts)
    assert summaries_json(again) == summaries_json(summarise_release(changed, rules))


def test_within_the_tolerance_the_approved_summary_is_kept_but_never_one_approved_under_other_rules(tmp_path):
    database, rules = tmp_path / "w.duckdb", SummaryRules(k=2)
    frames = release_frames(rows=40)
    stored = _store(database, frames)
    first, parts, _ = _summarise(stored, rules, {})
    changed = {**frames, CHANGED: frames[CHANGED].head(frames[CHANGED].height - 1)}
    write_table(database, "deidentified_magistrates", CHANGED[1], changed[CHANGED])
    tables = LoadedOnUse(stored, keep=2)
    kept, made = summarise_keeping(tables, table_fingerprints(stored, rules), rules, parts, tolerance=1.0)
    assert summaries_json(kept) == summaries_json(first)  # the approved summary, not the fresh one
    assert set(kept_within_tolerance(made)) == {"magistrates.hocas_all_offence"}
    assert drift_measured(made) == kept_within_tolerance(made) and 0 < drift_measured(made)[CHANGED_NAME] <= 1.0
    # beyond the tolerance it is drawn again, and its drift is still reported
    redrawn, made = summarise_keeping(LoadedOnUse(stored, keep=2), table_fingerprints(stored, rules), rules, parts,
                                      tolerance=1e-9)
    assert not kept_within_tolerance(made) and drift_measured(made)[CHANGED_NAME] > 1e-9
    other = SummaryRules(k=3)
    fresh, made = summarise_keeping(LoadedOnUse(stored, keep=2), table_fingerprints(stored, other), other, parts,
                                    tolerance=1.0)
    assert summaries_json(fresh) == summaries_json(summarise_release(changed, other)) and not kept_within_tolerance(made)


def _cdf_by_loop(bins, total, x, *, left):
    """The drift's CDF as it was written, one point at a time (the reference for the vectorised one)."""
    acc = 0.0
    for lo, hi, rows in bins:
        if hi <= lo:
            acc += rows if (x > lo if left else x >= lo) else 0.0
        elif x >= hi:
            acc += rows
        elif x > lo:
            acc += rows * (x - lo) / (hi - lo)
    return acc / total


def test_the_histogram_distance_is_the_one_computed_point_by_point_to_the_last_bit():
    """The refresh decides "within the tolerance" on this distance: computing it for all points at
    once must not move it by a rounding (same additions, in the same order)."""
    import random

    from datafirst_assets.synthetic.refresh import _bins, histogram_distance

    rng = random.Random(0)

    def histogram():
        edges = sorted(rng.sample(range(-50, 500), rng.randrange(2, 40)))
        bins = [{"lo": lo / 7, "hi": (hi / 7 if rng.random() < 0.9 else lo / 7), "rows": rng.randrange(0, 900)}
                for lo, hi in zip(edges, edges[1:])]
        if rng.random() < 0.3:
            bins[-1]["hi"] = None  # an open top bin
        return bins

    def months():
        return [{"lo": f"20{y:02d}-{m:02d}", "hi": f"20{y:02d}-{m:02d}", "rows": rng.randrange(1, 50)}
                for y in range(10, 12) for m in range(1, 13) if rng.random() < 0.8]

    for _ in range(300):
        p, q = (histogram(), histogram()) if rng.random() < 0.8 else (months(), months())
        a, b = _bins(p), _bins(q)
        ta, tb = sum(r for _, _, r in a), sum(r for _, _, r in b)
        if not ta or not tb:
            continue
        points = sorted({e for lo, hi, _ in a + b for e in (lo, hi)})
        expected = max(abs(_cdf_by_loop(a, ta, x, left=left) - _cdf_by_loop(b, tb, x, left=left))
                       for x in points for left in (False, True))
        assert histogram_distance(p, q) == expected
