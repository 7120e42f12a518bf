"""Without clerical labels a dataset's estimates rest on fits over all its pairs (threshold.NoLabelFits:
the transitivity check, the date-of-birth witness's factors). A full run fits them; an incremental run
applies the stored ones while the model, the fitting code and most pairs are unchanged, and says which
run fitted them; a model change, a large change or a full run fits them again."""

from pathlib import Path
import json
from datetime import date

import numpy as np
import polars as pl
import pytest

from datafirst_assets.linkage import threshold
from datafirst_assets.linkage.guard import guarded_components_at
from datafirst_assets.linkage.quality_parts import reusable_fits
from datafirst_assets.linkage.threshold import NoLabelFits, assess
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets_tests.test_quality_kept_work import _next_extract
from datafirst_assets_tests.test_quality_parts import materialize_quality
from datafirst_assets_tests.test_threshold_choice import _people_who_moved
from datafirst_assets_tests.warehouse_tables import write_table


def _refitting_fails(monkeypatch) -> None:
    def refit(*_, **__):
        raise AssertionError("the no-label fits were fitted again")

    monkeypatch.setattr(threshold, "transitivity_check", refit)
    monkeypatch.setattr(threshold, "witness_factors", refit)


def test_stored_fits_applied_to_unchanged_pairs_give_the_refits_estimates_exactly(monkeypatch):
    pairs, records = _people_who_moved()
    pairs = pairs.drop("same")
    first = assess(pairs, labels_file=None, records=records, fit_as=("run-1", "m1", "code"))
    assert first.fits is not None and first.fits.run == "run-1" and first.fits.pairs == pairs.height
    assert first.fits.witness  # the movers' patterns have factors
    _refitting_fails(monkeypatch)
    again = assess(pairs, labels_file=None, records=records, previous=first.kept, fits=first.fits)
    assert again.kept.computed["fits_reused_from"] == "run-1" and again.fits.changed == 0
    assert again.estimate_at(0.9) == first.estimate_at(0.9)
    assert again.clusters.equals(first.clusters) and again.pairs.equals(first.pairs)


def test_a_small_change_applies_the_stored_fits_and_a_large_one_refits(monkeypatch):
    pairs, records = _people_who_moved()
    pairs = pairs.drop("same")
    first = assess(pairs, labels_file=None, records=records, fit_as=("run-1", "m1", "code"))
    after_pairs, after_records = _next_extract(pairs, records)  # 4 of 2,301 pairs new or re-read
    refit = assess(after_pairs, labels_file=None, records=after_records, previous=first.kept,
                   fit_as=("run-2", "m1", "code"))
    with monkeypatch.context() as patched:
        _refitting_fails(patched)
        reused = assess(after_pairs, labels_file=None, records=after_records, previous=first.kept, fits=first.fits,
                        fit_as=("run-2", "m1", "code"))
    assert reused.fits.run == "run-1" and reused.fits.changed == 4
    # what the fits read is carried for the next refit to compare with
    assert reused.kept.support is first.kept.support and reused.kept.same_name_sums is first.kept.same_name_sums
    fresh, stored = refit.estimate_at(0.9), reused.estimate_at(0.9)
    for key, value in fresh.items():
        if isinstance(value, float):
            assert stored[key] == pytest.approx(value, rel=2e-3), key
    # the changes add up over the runs that reuse the fits: past the share, they are fitted again
    monkeypatch.setattr(threshold, "FITS_REUSE_SHARE", 3 / pairs.height)  # the 4 changed pairs are too many
    later = assess(after_pairs, labels_file=None, records=after_records, previous=reused.kept, fits=reused.fits,
                   fit_as=("run-3", "m1", "code"))
    assert later.fits.run == "run-3" and later.fits.changed == 0 and "fits_reused_from" not in later.kept.computed


def test_fits_survive_their_file_and_are_reused_only_for_their_model_and_code():
    pairs, records = _people_who_moved()
    fits = assess(pairs.drop("same"), labels_file=None, records=records, fit_as=("run-1", "m1", "code")).fits
    assert NoLabelFits.from_json(json.loads(json.dumps(fits.to_json()))) == fits
    assert reusable_fits(fits, "m1", "code") is fits
    assert reusable_fits(fits, "m2", "code") is None and reusable_fits(fits, "m1", "other") is None


# ------------------------------------------------------------------ through the asset


def _warehouse(root) -> None:
    """Every dataset: a few records; magistrates: 40 people of two records each, half without a date
    of birth on one side (the witness's patterns), so that one new pair is a small change."""
    for source in SOURCES:
        n = 80 if source == "magistrates" else 4
        ids = [f"{source}-{i}" for i in range(n)]
        write_table(root / "wh.duckdb", f"linkage_{source}", "clusters", pl.DataFrame({
            "record_id": ids, "model_version": ["v1"] * n, "match_threshold": [0.9] * n,
            SOURCES[source].person_id_name: [i // 2 for i in range(n)]}))
        write_table(root / "wh.duckdb", f"linkage_{source}", "scored_pairs", pl.DataFrame({
            "record_id_l": ids[0::2], "record_id_r": ids[1::2], "match_weight": [12.0 if i % 3 else -2.0
                                                                               for i in range(n // 2)],
            "match_probability": [1 / (1 + 2.0 ** -(12.0 if i % 3 else -2.0)) for i in range(n // 2)]}))
        write_table(root / "wh.duckdb", f"linkage_{source}", "person_records", pl.DataFrame({
            "record_id": ids, "forename": [f"F{i // 2}" for i in range(n)], "surname": [f"S{i // 2}" for i in range(n)],
            "postcode": [f"P{i // 2}" for i in range(n)],
            "dob": [date(1950 + i // 2 % 40, 1, 1) if i % 4 != 3 else None for i in range(n)]}))


def _quality(root, mode: str = "incremental") -> tuple[str, dict, dict]:
    """The run id, and per dataset the run its no-label fits came from and what it computed."""
    result, metadata = materialize_quality(root, mode)
    return result.run_id, metadata["fits_from_run"].value, metadata["computed"].value


def test_an_incremental_run_reuses_the_fits_and_a_model_change_or_full_run_refits(tmp_path):
    _warehouse(tmp_path)
    first, fits, _ = _quality(tmp_path)
    assert fits == {s: first for s in SOURCES}
    report = (tmp_path / "reports" / "linkage_quality.md").read_text()
    assert "Where the no-label fits came from" in report and f"{first} (this run)" in report
    database = tmp_path / "wh.duckdb"
    with warehouse_cursor(database) as conn:  # a new record of person 0, linked: 1 pair of 41
        conn.execute("insert into linkage_magistrates.person_records values "
                     "('magistrates-80', 'F0', 'S0', 'P0', DATE '1950-01-01')")
        conn.execute("insert into linkage_magistrates.clusters values ('magistrates-80', 'v1', 0.9, 0)")
        conn.execute("insert into linkage_magistrates.scored_pairs values "
                     "('magistrates-0', 'magistrates-80', 12.0, 0.99975)")
    second, fits, computed = _quality(tmp_path)
    assert fits == {s: first for s in SOURCES}  # magistrates applied run 1's fits; the rest were kept
    assert computed["magistrates"]["fits_reused_from"] == first
    assert first in (tmp_path / "reports" / "linkage_quality.md").read_text()
    with warehouse_cursor(database) as conn:  # another model: its scores are not those the fits describe
        conn.execute("update linkage_magistrates.clusters set model_version = 'v2'")
    third, fits, computed = _quality(tmp_path)
    assert fits["magistrates"] == third and "fits_reused_from" not in computed["magistrates"]
    full, fits, _ = _quality(tmp_path, mode="full")  # the weekly rebuild refits every dataset
    assert fits == {s: full for s in SOURCES}


# ------------------------------------------------------------------ the B-cubed sweep


def _every_record_at_every_threshold(left, right, q, n, components) -> list[dict]:
    """What `threshold.bcubed_sweep` replaces: every record's sums at every threshold."""
    true_size = 1 + np.bincount(left, q, n) + np.bincount(right, q, n)
    rows = []
    for t, root in sorted(components.items()):
        inside = q * (root[left] == root[right])
        together = 1 + np.bincount(left, inside, n) + np.bincount(right, inside, n)
        size = np.bincount(root, minlength=n)[root]
        precision, recall = float(np.mean(together / size)), float(np.mean(together / true_size))
        rows.append({"threshold": t, "bcubed_precision": precision, "bcubed_recall": recall,
                     "bcubed_f1": 2 * precision * recall / (precision + recall)})
    return rows


@pytest.mark.parametrize("seed", range(4))
def test_the_bcubed_sweep_gives_every_records_figures_to_the_bit(seed):
    # random pairs, some records in several pairs and some pairs listed twice; plain and guarded clusters
    rng = np.random.default_rng(seed)
    n, m = 400, 900
    left, right = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = left != right
    left, right = left[keep], right[keep]
    left, right = np.concatenate([left, left[:20]]), np.concatenate([right, right[:20]])
    probability, q = rng.random(left.size), rng.random(left.size)
    thresholds = threshold.candidate_thresholds()
    plain = threshold.components_at(n, left, right, probability, thresholds)
    ids = [f"r{i:04d}" for i in range(n)]
    # dates of birth agreeing in at most one part: the guard refuses many of the joins
    records = pl.DataFrame({"record_id": ids,
                            "dob": [date(1931 + 13 * (i % 5), 1 + 5 * (i % 3), 3 + 7 * (i % 4)) for i in range(n)]})
    guarded = guarded_components_at(ids, left, right, probability, thresholds, records)
    assert any(not np.array_equal(plain[t], guarded[t]) for t in thresholds)
    for components in (plain, guarded):
        assert threshold.bcubed_sweep(left, right, q, n, components) == \
            _every_record_at_every_threshold(left, right, q, n, components)


def test_the_fits_code_digest_is_the_other_codes_under_a_benchmarks_code_version_of(tmp_path, monkeypatch):
    """An A/B from a snapshot (`bench_incremental_graph.py --as-code-of`) reuses the fits the snapshot's
    code stored, as the same code's next run would: the digest is of that code's `threshold.py`."""
    from datafirst_assets.linkage.quality_parts import fitting_code
    from datafirst_assets.warehouse.content import CODE_VERSION_OF

    mine = fitting_code()
    (tmp_path / "linkage").mkdir()
    (tmp_path / "linkage" / "threshold.py").write_text("# another version of the fits' code\n")
    monkeypatch.setenv(CODE_VERSION_OF, str(tmp_path))
    assert fitting_code() != mine
    (tmp_path / "linkage" / "threshold.py").write_bytes(
        (Path(__file__).resolve().parents[1] / "datafirst_assets" / "linkage" / "threshold.py").read_bytes())
    assert fitting_code() == mine
