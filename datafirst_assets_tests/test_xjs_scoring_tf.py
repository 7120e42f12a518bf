"""The incremental cross-justice scoring (``incremental.score_new_records(only_blocked=True)``)
registers term-frequency tables of only the values its pairs have, counted over every variant
(``incremental.needed_term_frequencies``), instead of Splink's tables of every value: the rows it
keeps are Splink's own, to the bit, and the pairs score exactly as before."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from datafirst_assets.linkage import incremental
from datafirst_assets.linkage.backend import make_db_api
from datafirst_assets.linkage.train import make_linker
from datafirst_assets.linkage.xjs import build_xjs_lookup, person_variants, records_with_persons
from datafirst_assets_tests.xjs_fixtures import shared_small_linkage_inputs


@pytest.fixture(scope="module")
def tf_model_and_variants(tmp_path_factory):
    """A cross-justice model trained with its term-frequency adjustments, and the variants."""
    _, inputs = shared_small_linkage_inputs(tmp_path_factory, people=2000, seed=1, extracts=2)
    model = build_xjs_lookup(inputs.person_records, inputs.clusters).model
    variants, _ = person_variants(records_with_persons(inputs.person_records, inputs.clusters))
    assert model is not None and incremental.tf_columns(model.settings), "the model must adjust for frequencies"
    return model, variants


def _splink_tf(records: pl.DataFrame, column: str) -> pl.DataFrame:
    """Splink's own term-frequency SQL (``term_frequencies_for_single_column_sql``) over ``records``."""
    with duckdb.connect() as con:
        con.register("t", records.select(column).to_arrow())
        return con.sql(f'select "{column}", cast(count(*) as float8) / (select count("{column}") from t) '
                       f'as "tf_{column}" from t where "{column}" is not null group by "{column}"').pl()


def test_needed_term_frequencies_are_splinks_rows_to_the_bit():
    # counts whose quotient by the total polars' scalar division (a product with the reciprocal)
    # rounds one bit away from the true quotient, so the test sees the difference it guards against
    total = 1_000_003
    counted = [f"x{i}" for i in range(1, 400) for _ in range(i)]  # x<i> counted i times
    padding = [f"pad{i}" for i in range(total - len(counted))]  # distinct values up to the total
    records = pl.DataFrame({"v": pl.Series(counted + padding + [None] * 7, dtype=pl.String)})
    assert records.get_column("v").len() - records.get_column("v").null_count() == total
    splink = _splink_tf(records, "v").filter(pl.col("v").str.starts_with("x")).sort("v")
    product = splink.select((pl.col("v").str.slice(1).cast(pl.Int64).cast(pl.Float64) / float(total)).alias("p"))
    assert (product.get_column("p") != splink.get_column("tf_v")).any(), "pick counts polars rounds otherwise"
    wanted = pl.DataFrame({"v": [f"x{i}" for i in range(1, 400)] + [None]})
    ours = incremental.needed_term_frequencies(records, wanted, ["v"])["v"].sort("v")
    assert ours.columns == ["v", "tf_v"]
    assert ours.equals(splink)  # every wanted value, none other, the same doubles


def test_needed_term_frequencies_match_splinks_tables_of_the_variants(tf_model_and_variants):
    model, variants = tf_model_and_variants
    scored = variants.gather_every(7)
    linker = make_linker(make_db_api(), variants, model.settings, model.spec, views=True)
    ours = incremental.needed_term_frequencies(variants, scored, incremental.tf_columns(model.settings))
    assert set(ours) == set(incremental.tf_columns(model.settings))
    for column, table in ours.items():
        full = linker.table_management.compute_tf_table(column).as_pandas_dataframe()
        theirs = pl.from_pandas(full).cast(table.schema)  # type: ignore[arg-type]
        wanted = scored.get_column(column).drop_nulls().unique()
        assert table.sort(column).equals(theirs.filter(pl.col(column).is_in(wanted.implode())).sort(column))


def test_blocked_scoring_with_frequencies_gives_the_same_pairs_without_splinks_tables(tf_model_and_variants,
                                                                                     monkeypatch):
    model, variants = tf_model_and_variants
    rescore = variants.get_column("record_id").gather_every(40)

    def scored(only_blocked: bool) -> pl.DataFrame:
        pairs = incremental.score_new_records(make_db_api(), model, variants, rescore, keep_above=0.01,
                                              only_blocked=only_blocked)
        return pairs.sort(pairs.columns)

    everything = scored(False)
    # the blocked scoring never groups every variant by value (Splink's compute_tf_table)
    from splink.internals.linker_components.table_management import LinkerTableManagement

    def refused(*_a, **_k):
        raise AssertionError("term frequencies of every variant computed")

    monkeypatch.setattr(LinkerTableManagement, "compute_tf_table", refused)
    blocked = scored(True)
    assert everything.height > 0 and blocked.equals(everything)  # the same pairs and the same doubles
