"""Settings built from the fields present; blocking sizing; model versioning; backend."""

from __future__ import annotations

import copy
import datetime

import polars as pl
import pytest

from datafirst_assets.linkage.backend import make_db_api
from datafirst_assets.linkage.predict import predict_pairs
from datafirst_assets.linkage.settings import (
    LinkageConfigError,
    build_model_spec,
    candidate_blocking_keys,
    count_pairs,
    fit_blocking_rules,
    Key,
    model_spec_for_records,
    usable_fields,
)
from datafirst_assets.linkage.train import make_linker, model_summary, model_version
from datafirst_assets_tests.linkage_fixtures import make_dataset


@pytest.fixture(scope="module")
def records() -> pl.DataFrame:
    return make_dataset(150, seed=5)[0]


def _names(spec) -> list[str]:
    return [c["output_column_name"] for c in spec.settings["comparisons"]]


def _rules(spec) -> list[str]:
    return [b["blocking_rule"] for b in spec.settings["blocking_rules_to_generate_predictions"]]


@pytest.mark.parametrize("fields", [
    ("forename", "middle_names", "surname", "dob", "sex", "postcode", "address", "pnc", "cro"),  # magistrates
    ("forename", "surname", "dob", "sex", "pnc", "cro"),  # prison: no postcode
    ("forename", "surname", "dob", "postcode", "address"),  # civil: no sex / pnc
    ("surname", "dob"),
    ("postcode", "address"),
    ("forename", "surname"),
])
def test_settings_from_field_subsets_run_in_splink(records, fields):
    frame = records.select("record_id", "source_dataset", *fields)
    spec = model_spec_for_records(frame)
    assert set(spec.fields) == set(fields)
    assert _names(spec) == [f for f in ("forename", "middle_names", "surname", "dob", "sex", "postcode",
                                        "address", "pnc", "cro") if f in fields]
    used = " ".join(_rules(spec) + list(spec.em_blocking_rules) + list(spec.deterministic_rules))
    for absent in {"forename", "surname", "dob", "postcode", "pnc", "cro"} - set(fields):
        assert f'"{absent}"' not in used and f".{absent} " not in used
    assert len(spec.em_blocking_rules) >= (2 if len(fields) > 1 else 1)
    assert spec.deterministic_rules and 0.2 <= spec.deterministic_recall <= 0.95
    # the SQL is valid: an (untrained) prediction runs
    linker = make_linker(make_db_api(), frame, spec.settings, spec)
    scored = predict_pairs(linker).as_pyarrow_table()
    assert scored.num_rows > 0 and {"match_probability", "match_weight"} <= set(scored.column_names)



@pytest.mark.parametrize("fields", [
    ("forename", "middle_names", "surname", "dob", "sex", "postcode", "address", "pnc", "cro"),
    ("forename", "surname", "dob", "sex", "pnc", "cro"),
    ("forename", "surname", "dob", "postcode", "address"),
    ("surname", "dob"),
])
def test_splinks_own_settings_validation_finds_nothing_to_say(records, fields, caplog):
    """make_linker skips Splink's settings validation (it only logs, and cost ~90 ms a Linker): the
    settings built for any field subset must give it nothing to log."""
    import logging

    from splink import Linker

    from datafirst_assets.linkage.train import register_records

    frame = records.select("record_id", "source_dataset", *fields)
    spec = model_spec_for_records(frame)
    db_api = make_db_api()
    with caplog.at_level(logging.WARNING, logger="splink"):
        Linker(register_records(db_api, frame, spec), spec.settings, log_level=logging.WARNING,
               validate_settings=True)
        broken = dict(spec.settings, unique_id_column_name="no_such_id")
        Linker(register_records(db_api, frame, spec), broken, log_level=logging.WARNING, validate_settings=True)
    said = [r.getMessage() for r in caplog.records if "SETTINGS VALIDATION" in r.getMessage()]
    assert len(said) == 1  # the broken copy only: the check can speak, and the real settings give it nothing


def test_comparisons_have_tf_and_swap_levels(records):
    spec = model_spec_for_records(records)
    comps = {c["output_column_name"]: c for c in spec.settings["comparisons"]}
    tf = {c: [lvl.get("tf_adjustment_column") for lvl in comp["comparison_levels"]] for c, comp in comps.items()}
    for col in ("forename", "surname", "postcode", "dob", "pnc"):
        assert col in tf[col]
    labels = [lvl.get("label_for_charts") for lvl in comps["forename"]["comparison_levels"]]
    assert "forename and surname swapped" in labels
    assert "forename is the other's first middle name" in labels
    dob_labels = [lvl.get("label_for_charts") for lvl in comps["dob"]["comparison_levels"]]
    assert any("day and month swapped" in (x or "") for x in dob_labels)
    assert any("Same year" in (x or "") for x in dob_labels)
    pc_labels = [lvl.get("label_for_charts") for lvl in comps["postcode"]["comparison_levels"]]
    assert {"Same postcode district", "Same postcode area"} <= set(pc_labels)
    assert any("l.forename = r.surname" in r for r in _rules(spec))


def test_extras_link_type_and_errors(records):
    frame = records.with_columns(pl.lit("X").alias("const"), pl.col("sex").alias("gender"))
    spec = model_spec_for_records([frame, frame.head(10)], extras=["gender"])
    assert spec.link_type == "link_and_dedupe" and spec.settings["link_type"] == "link_and_dedupe"
    gender = [c for c in spec.settings["comparisons"] if c["output_column_name"] == "gender"][0]
    assert any(lvl.get("tf_adjustment_column") == "gender" for lvl in gender["comparison_levels"])
    with pytest.raises(LinkageConfigError, match="not in the records"):
        model_spec_for_records(frame, extras=["nope"])
    with pytest.raises(LinkageConfigError, match="unknown linkage fields"):
        build_model_spec(["forename", "shoe_size"])
    with pytest.raises(LinkageConfigError, match="sex alone"):
        build_model_spec(["sex"])
    with pytest.raises(LinkageConfigError, match="no usable"):
        build_model_spec([])


def test_empty_and_constant_columns_are_not_used(records):
    frame = records.with_columns(pl.lit(None, dtype=pl.String).alias("pnc"), pl.lit("M").alias("sex"))
    assert "pnc" not in usable_fields(frame) and "sex" not in usable_fields(frame)
    spec = model_spec_for_records(frame)
    assert "pnc" not in spec.fields and "sex" not in spec.fields


@pytest.mark.parametrize("frames", [
    "one", "two", "a field only one frame holds", "constant in each frame, different between them"])
def test_a_field_varies_when_two_non_null_values_differ_across_the_frames(frames):
    day = datetime.date(2000, 1, 1)
    a = pl.DataFrame({"forename": ["A", "A", None], "surname": ["X", "Y", "Z"], "dob": [day] * 3,
                      "sex": [None, None, None], "postcode": ["P", "P", "P"], "pnc": [1.0, float("nan"), 1.0]})
    b = pl.DataFrame({"forename": ["B", None], "dob": [day, None], "postcode": ["P", None],
                      "pnc": [float("nan"), float("nan")]})
    c = pl.DataFrame({"forename": ["A"], "pnc": [1]})
    given = {"one": a, "two": [a, a], "a field only one frame holds": [b, c],
             "constant in each frame, different between them": [a, b]}[frames]
    expected = {"one": ["surname", "pnc"], "two": ["surname", "pnc"], "a field only one frame holds": ["forename", "pnc"],
                "constant in each frame, different between them": ["forename", "surname", "pnc"]}[frames]
    assert usable_fields(given, ["forename", "surname", "dob", "sex", "postcode", "pnc"]) == expected


def test_oversized_blocking_rules_are_split():
    # 400 records sharing one junk PNC (79,800 pairs) plus unique ones
    n = 400
    frame = pl.DataFrame({
        "record_id": [str(i) for i in range(n)],
        "pnc": ["2000/0000000Z"] * n,
        "dob": pl.date_range(pl.date(1950, 1, 1), pl.date(1950, 1, 1) + pl.duration(days=n - 1), eager=True)
        .dt.offset_by("1y").head(n),
        "surname": [f"S{i % 7}" for i in range(n)],
    })
    assert count_pairs(frame, (Key("pnc"),)) == n * (n - 1) // 2
    rules, counts = fit_blocking_rules(frame, ["pnc", "dob", "surname"], max_pairs_per_rule=5_000)
    pnc_rule = [r for r in rules if not isinstance(r, str) and Key("pnc") in r][0]
    assert len(pnc_rule) == 2  # refined with a second key
    assert all(c <= 5_000 for label, c in counts.items() if "pnc" in label)
    # swapped-names rule counted without materialising pairs: (A,B) x (B,A) = 2 * 3
    sw = pl.DataFrame({"forename": ["A", "A", "B", "B", "B", "C"], "surname": ["B", "B", "A", "A", "A", "C"]})
    assert count_pairs(sw, "l.forename = r.surname AND l.surname = r.forename") == 6


def test_rules_refined_into_the_same_keys_are_kept_once():
    # everyone shares a placeholder dob: "dob & initial(forename)" and "dob & initial(surname)"
    # both need the other initial, and become the same rule
    n = 300
    frame = pl.DataFrame({
        "record_id": [str(i) for i in range(n)],
        "forename": [f"{'ABC'[i % 3]}{i}" for i in range(n)],
        "surname": [f"{'XYZ'[i % 3]}{i // 3}" for i in range(n)],
        "dob": [datetime.date(1900, 1, 1)] * n,
    })
    rules, counts = fit_blocking_rules(frame, ["forename", "surname", "dob"], max_pairs_per_rule=6_000)
    key_sets = [frozenset(r) for r in rules if not isinstance(r, str)]
    assert frozenset({Key("dob"), Key("forename", "initial"), Key("surname", "initial")}) in key_sets
    assert len(key_sets) == len(set(key_sets)) and len(counts) == len(rules)


def _toy_model() -> dict:
    return {
        "link_type": "dedupe_only", "linker_uid": "abc", "probability_two_random_records_match": 0.000123456,
        "comparisons": [{"output_column_name": "dob", "comparison_levels": [
            {"sql_condition": "dob_l IS NULL", "is_null_level": True},
            {"sql_condition": "dob_l = dob_r", "m_probability": 0.95123, "u_probability": 0.00071234,
             "label_for_charts": "Exact"},
            {"sql_condition": "ELSE", "m_probability": 0.04877, "u_probability": 0.99928766},
        ]}],
        "blocking_rules_to_generate_predictions": [{"blocking_rule": "l.dob = r.dob"}],
    }


def test_model_version_is_stable_under_float_noise():
    base = _toy_model()
    v = model_version(base)
    noisy = copy.deepcopy(base)
    noisy["linker_uid"] = "zzz"
    noisy["probability_two_random_records_match"] *= 1 + 1e-9
    noisy["comparisons"][0]["comparison_levels"][1]["m_probability"] += 1e-10
    assert model_version(noisy) == v
    changed = copy.deepcopy(base)
    changed["comparisons"][0]["comparison_levels"][1]["m_probability"] = 0.85
    assert model_version(changed) != v
    assert len(v) == 12 and model_version(__import__("json").dumps(base)) == v


def test_model_summary_weights():
    s = model_summary(_toy_model())
    lvl = s["comparisons"][0]["levels"][0]
    assert lvl["level"] == "Exact" and lvl["match_weight"] == pytest.approx(10.38, abs=0.01)  # log2(.95123/.00071234)
    assert len(s["comparisons"][0]["levels"]) == 2  # null level left out
    assert s["prior_match_weight"] < -12




def test_role_in_the_case_is_compared_within_a_dataset_only(records):
    roles = ["APPLICANT", "RESPONDENT", "CHILD", None]
    frame = records.with_columns(pl.Series("party_role", [roles[i % 4] for i in range(records.height)]))
    spec = model_spec_for_records(frame)
    role = {c["output_column_name"]: c for c in spec.settings["comparisons"]}["party_role"]
    labels = [lvl.get("label_for_charts") for lvl in role["comparison_levels"]]
    assert "Both adult parties, different roles" in labels
    assert "party_role" not in " ".join(_rules(spec))  # never blocked on
    linker = make_linker(make_db_api(), frame, spec.settings, spec)
    assert predict_pairs(linker).as_pyarrow_table().num_rows > 0
    # linking datasets: a role means nothing in another system
    assert "party_role" not in model_spec_for_records([frame, frame.head(20)]).fields


def test_sparse_data_gets_blocking_on_surname_in_area_and_address(records):
    full = records.select("record_id", "source_dataset", "forename", "surname", "dob", "postcode", "address")
    dense_rules = {r for r in model_spec_for_records(full).prediction_rules}
    assert "surname & area(postcode)" not in dense_rules
    sparse = full.with_columns(pl.when(pl.int_range(pl.len()) % 2 == 0).then(None).otherwise(pl.col("dob"))
                               .alias("dob"))  # half the dates of birth missing
    spec = model_spec_for_records(sparse)
    assert {"surname & area(postcode)", "address & initial(surname)"} <= set(spec.prediction_rules)
    assert count_pairs(pl.DataFrame({"surname": ["A", "A", "A"], "postcode": ["B1 2CD", "B12 3EF", "BB1 2CD"]}),
                       (Key("surname"), Key("postcode", "area"))) == 1  # B and B share an area, BB not
    linker = make_linker(make_db_api(), sparse, spec.settings, spec)
    assert predict_pairs(linker).as_pyarrow_table().num_rows > 0


def test_the_prior_comes_from_names_and_postcode_when_dates_of_birth_are_mostly_missing():
    fields = ["forename", "surname", "dob", "postcode"]
    dense = build_model_spec(fields, completeness={"dob": 0.95, "postcode": 0.9})
    sparse = build_model_spec(fields, completeness={"dob": 0.3, "postcode": 0.9})
    assert "dob" in dense.deterministic_rules[0] and "postcode" not in dense.deterministic_rules[0]
    assert "postcode" in sparse.deterministic_rules[0] and "dob" not in sparse.deterministic_rules[0]


def _levels(spec, comparison: str) -> list[dict]:
    comp = next(c for c in spec.settings["comparisons"] if c["output_column_name"] == comparison)
    return comp["comparison_levels"]


def test_both_names_are_weighed_once_by_the_full_name_where_dates_of_birth_are_sparse():
    """Sparse dates of birth: a pair agreeing on forename and surname is weighed once, in the forename
    comparison, by the full name's frequency; the surname comparison calls it neutral. Dense: as before."""
    from datafirst_assets.linkage.settings import FULL_NAME, uses_full_name

    fields = ["forename", "surname", "dob", "postcode", "address"]
    sparse = build_model_spec(fields, completeness={"dob": 0.3, "postcode": 0.9})
    dense = build_model_spec(fields, completeness={"dob": 0.95, "postcode": 0.9})
    assert uses_full_name(sparse.settings) and not uses_full_name(dense.settings)
    both = _levels(sparse, "forename")[1]
    assert both["tf_adjustment_column"] == FULL_NAME and not both.get("is_null_level")
    assert "forename_l" in both["sql_condition"] and "surname_r" in both["sql_condition"]
    assert _levels(sparse, "surname")[1]["is_null_level"] and _levels(sparse, "surname")[1]["sql_condition"] == \
        both["sql_condition"]
    assert all(lvl.get("tf_adjustment_column") != FULL_NAME for c in dense.settings["comparisons"]
               for lvl in c["comparison_levels"])
    assert not uses_full_name(build_model_spec(["surname", "dob", "postcode"], completeness={"dob": 0.3}).settings)


def test_full_name_frequency_counts_places_not_records_and_names_that_go_together():
    from datafirst_assets.linkage.settings import full_name_frequencies

    # One litigant: 10 records of one rare name at one postcode. Names that go together: HALIMA ALI at
    # 4 areas, although HALIMA and ALI are each no commoner than that.
    rows = ([("ZEB", "QUORN", "AB1 2CD")] * 10 + [("HALIMA", "ALI", pc) for pc in ("E1 1AA", "N1 1AA", "B1 1AA",
                                                                                  "M1 1AA")]
            + [(f"F{i}", f"S{i}", "LS1 1AA") for i in range(86)])
    frame = pl.DataFrame(rows, schema=["forename", "surname", "postcode"], orient="row")
    tf = dict(full_name_frequencies([frame]).iter_rows())
    n = frame.height
    assert tf["ZEB QUORN"] == pytest.approx((10 / n) * (10 / n))  # not 10 records' worth: one place
    places = 1 + 4 + 86
    assert tf["HALIMA ALI"] == pytest.approx(3 / places)  # shared beyond its own holder's place
    assert tf["HALIMA ALI"] > (4 / n) * (4 / n)


def test_a_sparse_model_with_the_full_name_scores_in_splink(records):
    frame = records.select("record_id", "source_dataset", "forename", "surname", "dob", "postcode", "address")
    spec = build_model_spec(["forename", "surname", "dob", "postcode", "address"],
                            completeness={"dob": 0.3, "postcode": 1.0, "address": 1.0})
    linker = make_linker(make_db_api(), frame, spec.settings, spec)
    scored = predict_pairs(linker).as_pyarrow_table()
    assert scored.num_rows > 0


def _pairs_by_brute_force(frame: pl.DataFrame, rule) -> int:
    """Every pair of rows compared in Python: the definition the hashed counts must meet."""
    rows = frame.with_columns(
        *[k.polars().alias(str(k)) for k in (rule if not isinstance(rule, str) else ())]).to_dicts()
    n = 0
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            if isinstance(rule, str):
                n += a["forename"] is not None and a["surname"] is not None and (
                    a["forename"] == b["surname"] and a["surname"] == b["forename"])
            else:
                n += all(a[str(k)] is not None and a[str(k)] == b[str(k)] for k in rule)
    return n


def test_hashed_block_counts_equal_counting_every_pair(records):
    frame = records.head(120).with_columns(  # nulls in keys, and some names swapped
        pl.when(pl.int_range(pl.len()) % 7 == 0).then(None).otherwise(pl.col("dob")).alias("dob"),
        pl.when(pl.int_range(pl.len()) % 5 == 0).then(pl.col("surname")).otherwise(pl.col("forename"))
        .alias("forename"),
        pl.when(pl.int_range(pl.len()) % 5 == 0).then(pl.col("forename")).otherwise(pl.col("surname"))
        .alias("surname"))
    rules = [*candidate_blocking_keys(["forename", "surname", "dob", "postcode"], sparse=True),
             (Key("surname"), Key("dob", "year"), Key("forename", "initial")), (Key("postcode", "district"),)]
    counted = {str(r): count_pairs(frame, r) for r in rules}
    assert counted == {str(r): _pairs_by_brute_force(frame, r) for r in rules}
    assert sum(v > 0 for v in counted.values()) >= len(rules) - 2  # the rules do block pairs here
