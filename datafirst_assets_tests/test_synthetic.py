"""Synthetic release: schemas, joins, disclosure control of the summaries, labelling, the report's metrics."""

import json
from collections import Counter
from datetime import date

import polars as pl
import pytest

from datafirst_assets.deidentify.release_spec import release_tables
from datafirst_assets.synthetic.fabricate import fabricate_release
from datafirst_assets.synthetic.generate import synthesise_release
from datafirst_assets.synthetic.labels import is_synthetic_parquet, write_synthetic_parquet
from datafirst_assets.synthetic.notes import differences_note
from datafirst_assets.synthetic.report import (
    evaluate_synthetic,
    integrity_checks,
    ks_complement,
    report_html,
    report_markdown,
    structure_similarity,
    tv_complement,
)
from datafirst_assets.synthetic.summaries import (
    check_summaries,
    count_histogram,
    persons_per_id,
    suppress_shapes,
    summaries_json,
    summarise_release,
    xjs_shape_counts,
    xjs_shapes,
)

HOCAS, OFFENCES = ("magistrates", "hocas_flatfile"), ("magistrates", "hocas_all_offence")
XHIBIT, NOMIS = ("crown_court", "xhibit_flatfile"), ("prison", "nomis_flatfile")
XJS, CASES = ("linking", "xjs_lookup"), ("linking", "case_lookup")


def _plant(real: dict) -> dict:
    """Small cells to be suppressed: a court code of 9 people (on 2 rows each), one of exactly 10 people,
    an age of 120 and a hearing in 1901."""
    hocas = real[HOCAS]
    people = hocas["estimated_defendant_id"].drop_nulls().unique().sort()
    rare, common = set(people[:9].to_list()), set(people[9:19].to_list())
    rows_of = hocas.with_row_index("i").group_by("estimated_defendant_id").agg(pl.col("i").head(2))
    rare_rows = rows_of.filter(pl.col("estimated_defendant_id").is_in(rare))["i"].explode()
    common_rows = rows_of.filter(pl.col("estimated_defendant_id").is_in(common))["i"].explode()
    i = pl.int_range(pl.len())
    hocas = hocas.with_columns(
        pl.when(i.is_in(rare_rows)).then(pl.lit("RARE9")).when(i.is_in(common_rows)).then(pl.lit("COMMON10"))
        .otherwise(pl.col("court_code")).alias("court_code"),
        pl.when(i == 0).then(pl.lit(120, pl.Int32)).otherwise(pl.col("age_at_first_hearing"))
        .alias("age_at_first_hearing"),
        pl.when(i == 1).then(pl.lit(date(1901, 1, 1))).otherwise(pl.col("first_hearing_date"))
        .alias("first_hearing_date"),
    )
    assert len(set(rare_rows.to_list())) > 9  # more than 9 rows, still fewer than 10 people
    return {**real, HOCAS: hocas}


@pytest.fixture(scope="module")
def built():
    real = _plant(fabricate_release(1500, seed=7))
    doc = summarise_release(real)
    text = summaries_json(doc)
    synthetic = synthesise_release(json.loads(text), seed=5)  # generation sees only the JSON text
    return real, doc, text, synthetic


def test_every_table_has_the_release_schema(built):
    _, _, _, synthetic = built
    assert set(synthetic) == set(release_tables())
    for tid, spec in release_tables().items():
        assert list(synthetic[tid].schema.items()) == list(spec.schema().items()), tid
        assert synthetic[tid].height > 0, tid


def test_every_key_resolves_and_every_unique_key_holds(built):
    _, _, _, synthetic = built
    checks = integrity_checks(synthetic)
    assert checks.filter(pl.col("share") < 1).is_empty(), checks.filter(pl.col("share") < 1)
    relations = checks.filter(pl.col("kind") == "integrity")["check"].to_list()
    foreign_keys = sum(len(spec.foreign_keys) for spec in release_tables().values())
    assert sum(1 for c in relations if " -> " in c and "source_dataset" not in c) == foreign_keys
    assert checks.filter(pl.col("kind") == "integrity")["rows"].min() > 0


def test_documented_joins_return_rows(built):
    _, _, _, s = built
    offences = s[HOCAS].join(s[OFFENCES], on="defendant_case_id_hash")
    assert offences.height == s[OFFENCES].height > 0
    # hocas -> lookup (magistrates persons) -> xjs_person_id_medium -> prison persons -> nomis_flatfile
    magistrates = s[HOCAS].join(
        s[XJS].filter(pl.col("source_dataset") == "magistrates"),
        left_on="estimated_defendant_id", right_on="dataset_person_id")
    assert magistrates.height == s[HOCAS]["estimated_defendant_id"].is_not_null().sum()
    prison = s[XJS].filter(pl.col("source_dataset") == "prison").select(
        "xjs_person_id_medium", pl.col("dataset_person_id").alias("estimated_offender_id"))
    across = magistrates.select("defendant_case_id_hash", "xjs_person_id_medium").join(
        prison, on="xjs_person_id_medium").join(s[NOMIS], on="estimated_offender_id")
    assert across.height > 0
    linked = s[CASES].join(s[HOCAS], on="defendant_case_id_hash").join(s[XHIBIT], on="defendant_on_case_id_hash")
    assert linked.height == s[CASES].height > 0


def test_children_per_parent_and_rows_per_person_are_kept(built):
    real, _, _, synthetic = built
    structure = structure_similarity(real, synthetic)
    relations = structure.filter(~pl.col("relation").str.contains("xjs_person_id"))
    assert relations.height >= 25
    assert relations["similarity"].min() >= 0.9, relations.sort("similarity").head(3)
    for tid in (OFFENCES, ("probation", "delius_rqmnt"), ("civil", "parties")):
        assert synthetic[tid].height == pytest.approx(real[tid].height, rel=0.05), tid
    # One-to-one OASys tables stay one-to-one.
    core = synthetic[("oasys", "oasys_assessments_details_core_risk")]["assessment_id_hash"]
    assert core.n_unique() == core.len()


def test_small_categories_and_extremes_never_leave(built):
    real, doc, text, synthetic = built
    assert "RARE9" not in text and "COMMON10" in text
    codes = set(synthetic[HOCAS]["court_code"].drop_nulls())
    assert "RARE9" not in codes and "COMMON10" in codes
    ages = doc["tables"]["magistrates.hocas_flatfile"]["columns"]["age_at_first_hearing"]["bins"]
    assert max(b["hi"] for b in ages) < 120 and synthetic[HOCAS]["age_at_first_hearing"].max() < 120
    assert synthetic[HOCAS]["first_hearing_date"].min() > date(2000, 1, 1)
    assert check_summaries(doc) == []
    # Every category of every published column holds at least k people.
    tampered = json.loads(text)
    tampered["tables"]["magistrates.hocas_flatfile"]["columns"]["court_code"]["values"].append(
        {"value": "X", "rows": 4, "units": 3})
    assert check_summaries(tampered) == ["magistrates.hocas_flatfile.court_code: 'X' holds 3 < 10"]


def test_count_histograms_hide_the_maximum():
    counts = pl.Series([1] * 50 + [2] * 20 + [3] * 5 + [9] * 2 + [40])
    real = fabricate_release(300, seed=1)
    doc = summarise_release({HOCAS: real[HOCAS].with_columns(
        pl.Series("estimated_defendant_id", range(real[HOCAS].height)))})
    assert doc["tables"]["magistrates.hocas_flatfile"]["columns"]["estimated_defendant_id"]["rows_per_person"] == [
        {"lo": 1, "hi": 1, "mean": 1.0, "rows": real[HOCAS].height, "units": real[HOCAS].height}]
    # 50 ones, 20 twos, then 8 parents with 3 to 40: too few for a bin of their own, so they join the twos;
    # the merged bin keeps its mean (row totals survive) and does not say how high it goes.
    bins = count_histogram(counts, None, 10)
    assert [(b["lo"], b["hi"], b["rows"]) for b in bins] == [(1, 1, 50), (2, None, 28)]
    assert bins[-1]["mean"] == pytest.approx((20 * 2 + 5 * 3 + 2 * 9 + 40) / 28, abs=1e-4)


def test_generation_is_deterministic_and_copies_no_key(built):
    real, _, text, synthetic = built
    again = synthesise_release(json.loads(text), seed=5)
    other = synthesise_release(json.loads(text), seed=6)
    assert all(again[tid].equals(synthetic[tid]) for tid in synthetic)
    assert not other[HOCAS].equals(synthetic[HOCAS])
    for tid, spec in release_tables().items():
        for column in spec.with_role("primary_key", "foreign_key", "system_id"):
            overlap = set(real[tid][column.name].drop_nulls()) & set(synthetic[tid][column.name].drop_nulls())
            assert not overlap, (tid, column.name)
        assert synthetic[tid].select(pl.col(c.name).str.len_bytes().max() for c in
                                     spec.with_role("primary_key")).to_dicts() in ([], [{spec.primary_key: 64}])


def test_scale_sets_the_population_and_keeps_the_joins(built):
    real, _, text, _ = built
    half = synthesise_release(json.loads(text), seed=5, scale=0.5)
    assert half[HOCAS].height == round(real[HOCAS].height * 0.5)
    assert half[OFFENCES].height == pytest.approx(real[OFFENCES].height * 0.5, rel=0.1)
    assert half[XJS].height == pytest.approx(real[XJS].height * 0.5, rel=0.1)
    assert integrity_checks(half).filter(pl.col("share") < 1).is_empty()


def test_cross_justice_lookup_keeps_shapes(built):
    real, _, _, synthetic = built
    lookup = synthetic[XJS]
    for inner, outer in (("high", "medium"), ("medium", "low")):
        assert lookup.group_by(f"xjs_person_id_{inner}").agg(pl.col(f"xjs_person_id_{outer}").n_unique())[
            f"xjs_person_id_{outer}"].max() == 1
    # As in the real lookup, no cross-justice id holds two persons of one dataset.
    assert lookup.group_by("xjs_person_id_low", "source_dataset").len()["len"].max() == 1
    structure = structure_similarity(real, synthetic).filter(pl.col("relation").str.contains("xjs_person_id"))
    assert structure["similarity"].min() >= 0.8


def test_shape_coarsening_and_persons_per_id():
    lookup = pl.DataFrame({
        "source_dataset": ["magistrates", "prison", "probation", "magistrates", "prison"],
        "xjs_person_id_high": [1, 1, 2, 3, 4], "xjs_person_id_medium": [1, 1, 1, 2, 3],
        "xjs_person_id_low": [1, 1, 1, 2, 2],
    })
    shapes = xjs_shape_counts(lookup)
    assert shapes == Counter({"magistrates+prison,probation": 1, "magistrates | prison": 1})
    assert sorted(xjs_shapes(lookup)["shape"]) == sorted(shapes)
    assert persons_per_id(shapes) == {
        "high": [{"persons": 1, "ids": 3}, {"persons": 2, "ids": 1}],
        "medium": [{"persons": 1, "ids": 2}, {"persons": 3, "ids": 1}],
        "low": [{"persons": 2, "ids": 1}, {"persons": 3, "ids": 1}],
    }
    coarse, moved = suppress_shapes(Counter({"magistrates+prison,probation": 3, "magistrates+prison": 20,
                                             "magistrates": 50}), k=10)
    # The rare shape loses the person whose removal leaves the common shape.
    assert coarse == Counter({"magistrates+prison": 23, "magistrates": 50, "probation": 3}) and moved == 3


def test_labelling(tmp_path, built):
    _, doc, _, synthetic = built
    path = write_synthetic_parquet(synthetic[HOCAS], tmp_path, "hocas_flatfile")
    assert path.name == "hocas_flatfile.synthetic.parquet" and is_synthetic_parquet(path)
    assert pl.read_parquet(path).equals(synthetic[HOCAS])
    synthetic[HOCAS].write_parquet(tmp_path / "plain.parquet")
    assert not is_synthetic_parquet(tmp_path / "plain.parquet")
    note = differences_note(doc, seed=5, scale=1.0, sha256="abc")
    assert note.startswith("# About the synthetic release") and "SYNTHETIC DATA" in note
    assert "Relationships between columns are not kept" in note and "| magistrates.hocas_flatfile |" in note


def test_shape_metrics():
    assert ks_complement(pl.Series([1.0, 2, 3]).to_numpy(), pl.Series([1.0, 2, 3]).to_numpy()) == 1.0
    assert ks_complement(pl.Series([0.0, 0]).to_numpy(), pl.Series([1.0, 1]).to_numpy()) == 0.0
    assert tv_complement(pl.Series(["a", "b"]), pl.Series(["a", "a"])) == pytest.approx(0.5)


def test_report_on_a_copy_and_on_the_synthetic_release(built):
    real, doc, _, synthetic = built
    copy = evaluate_synthetic(real, real, doc)
    assert copy.summary["mean_shape_similarity"] == 1.0
    person_tables = copy.privacy.filter(pl.col("table").is_in(["magistrates.hocas_flatfile", "prison.nomis_flatfile"]))
    assert person_tables["dcr_synthetic"].to_list() == [0.0, 0.0]
    assert (person_tables["dcr_random"] > 0).all() and copy.failures()["dcr_vs_random"]
    assert copy.summary["uniques_reproduced"] == 1.0

    report = evaluate_synthetic(real, synthetic, doc)
    assert report.summary["mean_shape_similarity"] >= 0.9
    assert report.failures() == {"referential_integrity": [], "key_uniqueness": [], "shape_similarity": [],
                                 "dcr_vs_random": []}
    assert report.summary["uniques_reproduced"] < 0.5
    markdown, html = report_markdown(report), report_html(report)
    assert "Mean column-shape similarity" in markdown and "<table>" in html and "SYNTHETIC DATA" in html

    broken = dict(synthetic)
    broken[HOCAS] = synthetic[HOCAS].slice(1)  # a parent row gone: its offences dangle
    broken[OFFENCES] = pl.concat([synthetic[OFFENCES], synthetic[OFFENCES].head(1)])  # a duplicated key
    failing = integrity_checks(broken).filter(pl.col("share") < 1)
    assert failing.filter(pl.col("table") == "magistrates.hocas_all_offence")["kind"].sort().to_list() == [
        "integrity", "uniqueness"]


def test_a_report_reusing_unchanged_datasets_rows_is_the_full_report(built, tmp_path):
    from datafirst_assets.synthetic.report_parts import save_parts, stored_parts

    real, doc, _, synthetic = built
    full = evaluate_synthetic(real, synthetic, doc, seed=3)
    datasets = sorted({source for source, _ in release_tables() if source != "linking"})
    fingerprints = {d: f"fp-{d}" for d in datasets}
    save_parts(tmp_path / "parts.json", full, fingerprints)
    changed = {"magistrates", "prison"}
    earlier, only = stored_parts(tmp_path / "parts.json", {**fingerprints, **{d: "new" for d in changed}})
    assert only == {tid for tid in release_tables() if tid[0] in changed | {"linking"}}
    compared = _compared_again_equals_full(real, synthetic, doc, only, earlier, full)
    # an unchanged dataset's tables are not read (but its person table, for the cross-justice lookup)
    assert ("civil", "hearings") not in compared and ("oasys", "oasys_assessments_details_rosh") not in compared
    assert HOCAS in compared
    assert stored_parts(tmp_path / "parts.json", {d: "new" for d in datasets}) == (None, None)



def _compared_again_equals_full(real, synthetic, doc, only, earlier, full) -> list:
    """The report over `only` with the `earlier` rows equals the `full` one; returns the synthetic
    tables it read."""
    compared = []

    class Counting(dict):  # which synthetic tables are read
        def __getitem__(self, key):
            compared.append(key)
            return super().__getitem__(key)

    again = evaluate_synthetic(real, Counting(synthetic), doc, seed=3, only=only, earlier=earlier)
    for name in ("shapes", "structure", "integrity", "privacy"):
        assert getattr(again, name).equals(getattr(full, name)), name
    assert again.summary == full.summary
    return compared


def test_a_changed_case_lookup_alone_is_compared_again_and_its_rows_take_their_place(built, tmp_path):
    """The linking dataset kept but for its case lookup: only the case lookup is compared (not the
    cross-justice lookup, which reads every person table) and its new rows replace the stored ones
    where a full comparison lists them, between the linking tables' rows and the lookup's own checks."""
    from datafirst_assets.synthetic.report import SyntheticReport
    from datafirst_assets.synthetic.report_parts import CASE_PART, save_parts, stored_parts

    real, doc, _, synthetic = built
    full = evaluate_synthetic(real, synthetic, doc, seed=3)
    case = pl.col("table") == "linking.case_lookup"
    # stored rows of the case lookup made stale: what the report must not keep
    stale = SyntheticReport(full.shapes.with_columns(pl.when(case).then(0.0).otherwise("similarity").alias("similarity")),
                            full.structure,
                            full.integrity.with_columns(pl.when(case).then(0).otherwise("passing").alias("passing")),
                            full.privacy, full.summary)
    assert full.integrity.filter(case).height and full.shapes.filter(case).height
    parts = sorted({source for source, _ in release_tables()}) + [CASE_PART]
    fingerprints = {d: f"fp-{d}" for d in parts}
    save_parts(tmp_path / "parts.json", stale, fingerprints)
    earlier, only = stored_parts(tmp_path / "parts.json", {**fingerprints, CASE_PART: "new"})
    assert only == {("linking", "case_lookup")}
    compared = _compared_again_equals_full(real, synthetic, doc, only, earlier, full)
    assert ("linking", "xjs_lookup") not in compared and ("prison", "nomis_flatfile") not in compared
    # the cross-justice lookup's part changed: the whole linking dataset is compared again
    assert stored_parts(tmp_path / "parts.json", {**fingerprints, "linking": "new"})[1] == {
        ("linking", "xjs_lookup"), ("linking", "case_lookup")}

def test_closest_is_the_gower_distance_to_the_nearest_reference_row():
    """`_closest` (float32, missing numbers as a far-off value) against Gower distance spelt out in
    float64: categories, numbers with missing values, a column with one real value, exact copies."""
    import numpy as np

    from datafirst_assets.synthetic.report import _closest

    rng = np.random.default_rng(3)

    def frame(n):
        numbers = rng.normal(100, 20, n)
        numbers[rng.random(n) < 0.2] = np.nan
        constant = np.full(n, 3.0)
        constant[rng.random(n) < 0.3] = np.nan
        return [rng.integers(-1, 4, n), numbers, constant]

    reference, queries = frame(700), frame(600)
    for column in range(3):
        queries[column][:20] = reference[column][:20]  # exact copies: distance 0
    present = reference[1][~np.isnan(reference[1])]
    ranges = [None, float(present.max() - present.min()), 0.0]

    def gower(i, j):
        total = 0.0
        for q, r, span in zip(queries, reference, ranges):
            a, b = q[i], r[j]
            if span is None:
                total += a != b
            elif np.isnan(a) or np.isnan(b):
                total += 0.0 if np.isnan(a) and np.isnan(b) else 1.0
            else:
                total += min(abs(a - b) / span, 1.0) if span > 0 else float(a != b)
        return total / len(queries)

    expected = [min(gower(i, j) for j in range(700)) for i in range(0, 600, 37)]
    assert np.allclose(_closest(queries, reference, ranges)[::37], expected, atol=1e-6)
    assert (_closest(queries, reference, ranges)[:20] == 0).all()


def test_the_synthetic_case_lookup_does_not_depend_on_the_order_its_keys_are_read_in():
    """The warehouse does not preserve the order of a scan: the same stored flatfiles read twice may
    come back in other orders, and the case lookup (so the release id) must not change with it."""
    from datafirst_assets.synthetic.generate import CASE_LOOKUP_ID, synthesise_case_lookup
    from datafirst_assets.synthetic.summaries import SummaryRules, summarise_table

    hocas = pl.Series("defendant_case_id_hash", [f"h{i:04d}" for i in range(500)])
    xhibit = pl.Series("defendant_on_case_id_hash", [f"x{i:04d}" for i in range(300)])
    spec, n = release_tables()[CASE_LOOKUP_ID], 200
    real = pl.DataFrame({"defendant_case_id_hash": hocas[:n], "defendant_on_case_id_hash": xhibit[:n],
                         "case_type": ["either_way", "indictable"] * (n // 2),
                         "match_score": [0.5 + i / 1000 for i in range(n)],
                         "keys_agreed": ["urn", "urn+asn"] * (n // 2)}).cast(spec.schema())
    summary = {**summarise_table(spec, {CASE_LOOKUP_ID: real}, SummaryRules()), "linked_share_of_crown_court": 0.6}
    as_stored = synthesise_case_lookup(summary, hocas, xhibit, seed=7)
    assert as_stored.height == 180
    for shuffle in (1, 2):
        read_again = synthesise_case_lookup(summary, hocas.shuffle(seed=shuffle), xhibit.shuffle(seed=shuffle), seed=7)
        assert read_again.equals(as_stored)


def test_fewer_units_than_counts_every_unit_when_the_first_rows_hold_too_few():
    from datafirst_assets.synthetic.summaries import _fewer_units_than

    k = 10
    # the first 64k rows hold one unit: the answer depends on the rows after them
    for tail in ([], list(range(8)), list(range(9)), list(range(50))):
        units = pl.Series([1] * (64 * k) + tail, dtype=pl.Int64)
        assert _fewer_units_than(units, k) == (units.n_unique() < k)
    assert not _fewer_units_than(pl.Series(range(1000), dtype=pl.Int64), k)
    assert _fewer_units_than(pl.Series([], dtype=pl.Int64), k)


def test_distinct_share_of_hashed_ids_equals_the_exact_share():
    import hashlib

    import numpy as np

    from datafirst_assets.synthetic.summaries import distinct_share

    rng = np.random.default_rng(7)
    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(5000)]
    for n, pool, null_share in ((20000, 5000, 0.0), (20000, 700, 0.2), (9, 9, 0.5), (3000, 3000, 0.0)):
        values = pl.Series([None if rng.random() < null_share else ids[i] for i in rng.integers(0, pool, n)],
                           dtype=pl.String)
        present = values.drop_nulls()
        assert distinct_share(values) == round(present.n_unique() / present.len(), 4)
    assert distinct_share(pl.Series([None, None], dtype=pl.String)) == 1.0
    assert distinct_share(pl.Series(["a", "a", "b", "b"])) == 0.5
