"""Data catalogues: every column of every release table, small counts suppressed, extremes coded."""

import datetime as dt
import re

import polars as pl
import pytest

from datafirst_assets.catalogue import CatalogueError, build_catalogue, build_catalogues
from datafirst_assets.deidentify.release_spec import (
    ReleaseColumn,
    ReleaseTable,
    release_datasets,
    release_tables,
)
from datafirst_assets_tests.release_fixtures import release_frames


def _section(text: str, start: str, end: str | None) -> str:
    body = text.split(start, 1)[1]
    return body.split(end, 1)[0] if end else body


def test_catalogues_list_every_column_of_every_release_table():
    specs = release_tables()
    catalogues = build_catalogues(release_frames(rows=40), specs)
    assert set(catalogues) == set(release_datasets())
    for dataset, tables in release_datasets().items():
        catalogue = catalogues[dataset]
        assert catalogue.tables.get_column("table").to_list() == [t.name for t in tables]
        for i, spec in enumerate(tables):
            listed = catalogue.frame.filter(pl.col("table") == spec.name)
            assert listed.get_column("column").to_list() == spec.column_names, (dataset, spec.name)
            assert listed.get_column("description").to_list() == [c.description for c in spec.columns]
            keys = listed.filter(pl.col("role").is_in(["primary_key", "foreign_key", "system_id", "person_key",
                                                       "xjs_key"]))
            assert keys.select("values", "min", "median", "max").null_count().row(0) == (keys.height,) * 4
            nxt = f"## {dataset}.{tables[i + 1].name}\n" if i + 1 < len(tables) else None
            md = _section(catalogue.markdown, f"## {dataset}.{spec.name}\n", nxt)
            page = _section(catalogue.html, f">{dataset}.{spec.name}</h2>",  # headings carry an anchor id
                            f">{dataset}.{tables[i + 1].name}</h2>" if nxt else None)
            for column in spec.column_names:
                assert f"`{column}`" in md and f"<code>{column}</code>" in page, (dataset, spec.name, column)
            withheld = "withheld: " + (", ".join(spec.dropped) or "(none)")
            assert withheld in md and withheld in page
    hocas = catalogues["magistrates"].tables.row(0, named=True)
    assert {"forename1", "surname", "address_line1"} <= set(hocas["withheld"].split(", "))


def _spec(*columns: ReleaseColumn, name="people", dropped=("surname",)) -> ReleaseTable:
    return ReleaseTable(source="demo", name=name, grain="person", columns=columns, dropped=dropped,
                        unique_key=(columns[0].name,))


DEMO = _spec(
    ReleaseColumn("person_hash", "primary_key", pl.String, "Person id (keyed hash)"),
    ReleaseColumn("group", "categorical", pl.String, "Group with one small cell"),
    ReleaseColumn("band", "categorical", pl.String, "Band with two small cells"),
    ReleaseColumn("age", "age", pl.Int32, "Age"),
    ReleaseColumn("score", "numeric", pl.Int64, "Score 0-3"),
    ReleaseColumn("seen", "date", pl.Date, "Date seen"),
    ReleaseColumn("rare_only", "categorical", pl.String, "Almost always missing"),
    ReleaseColumn("person_id", "person_key", pl.Int64, "Per-dataset person id (few distinct values)"),
)


def _demo_frame() -> pl.DataFrame:
    n = 50
    return pl.DataFrame({
        "person_hash": [f"{i:064x}" for i in range(n)],
        "group": ["A"] * 30 + ["B"] * 12 + ["C"] * 3 + [None] * 5,
        "band": ["A"] * 30 + ["B"] * 12 + ["C"] * 3 + ["D"] * 5,
        "age": list(range(1, n + 1)),
        "score": [i % 4 for i in range(n)],
        "seen": [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n)],
        "rare_only": ["X"] * 3 + [None] * (n - 3),
        "person_id": [i % 3 for i in range(n)],
    }, schema=DEMO.schema())


def test_value_lists_suppress_small_counts_and_their_complement():
    catalogue = build_catalogue("demo", {"people": _demo_frame()}, {"people": DEMO})
    rows = {r["column"]: r for r in catalogue.frame.iter_rows(named=True)}
    values = catalogue.values

    def shown(column):
        return dict(values.filter(pl.col("column") == column).select("value", "shown").rows())

    # One small cell: the next smallest is suppressed too, or 50 - 5 missing - 30 - 12 gives it away.
    assert shown("group") == {"A": "30", "B": "suppressed", "C": "<10"}
    assert values.filter((pl.col("column") == "group") & (pl.col("value") == "B")).item(0, "count") is None
    assert rows["group"]["pct_missing"] == 10.0 and rows["group"]["distinct"] == 3
    # Two small cells: neither can be recovered, so the large ones are exact.
    assert shown("band") == {"A": "30", "B": "12", "C": "<10", "D": "<10"}
    assert rows["band"]["values"] == "A (30); B (12); C (<10); D (<10)"
    # The only value is rare: % missing would give its count.
    assert shown("rare_only") == {"X": "<10"} and rows["rare_only"]["pct_missing"] is None
    # Keys: distinct count only, never a value or a range, however few distinct values they have.
    for key, distinct in (("person_hash", 50), ("person_id", 3)):
        assert rows[key]["distinct"] == distinct
        assert [rows[key][f] for f in ("values", "min", "median", "max")] == [None] * 4
        assert values.filter(pl.col("column") == key).is_empty()
    assert f"{0:064x}" not in catalogue.markdown and f"{0:064x}" not in catalogue.html
    # A numeric column with few distinct values gets both its value list and its range.
    assert shown("score") == {"0": "13", "1": "13", "2": "12", "3": "12"}
    assert "<10" not in "".join(shown("score").values())
    assert "surname" in catalogue.tables.item(0, "withheld")


def test_ranges_are_bottom_and_top_coded_at_min_count():
    frame = _demo_frame()
    columns = build_catalogue("demo", {"people": frame}, {"people": DEMO}).frame
    ranges = {c: columns.filter(pl.col("column") == c).select("min", "median", "max").row(0)
              for c in ("age", "seen")}
    # Ages 1..50: the 10th lowest and 10th highest, never the single youngest or oldest.
    assert ranges["age"] == ("10", "25.5", "41")
    assert ranges["seen"] == ("2020-01-10", "2020-01-25", "2020-02-10")
    strict = build_catalogue("demo", {"people": frame}, {"people": DEMO}, min_count=5).frame
    assert strict.filter(pl.col("column") == "age").select("min", "max").row(0) == ("5", "46")
    # Under 2 x min_count values: no range at all.
    small = build_catalogue("demo", {"people": frame.head(19)}, {"people": DEMO}).frame
    age = small.filter(pl.col("column") == "age").row(0, named=True)
    assert (age["min"], age["median"], age["max"]) == (None, None, None)
    assert "range withheld" in age["note"]


def test_spec_and_data_must_agree_on_columns():
    frame = _demo_frame()
    with pytest.raises(CatalogueError, match=r"demo\.people: .*not in the data: age"):
        build_catalogue("demo", {"people": frame.drop("age")}, {"people": DEMO})
    with pytest.raises(CatalogueError, match=r"demo\.people: .*does not describe: surname"):
        build_catalogue("demo", {"people": frame.with_columns(surname=pl.lit("SMITH"))}, {"people": DEMO})
    with pytest.raises(CatalogueError, match="missing from the data: people"):
        build_catalogue("demo", {}, {"people": DEMO})
    real = release_frames(rows=20)
    real[("magistrates", "hocas_flatfile")] = real[("magistrates", "hocas_flatfile")].drop("plea")
    with pytest.raises(CatalogueError, match=r"magistrates\.hocas_flatfile: .*plea"):
        build_catalogues(real, release_tables())


def test_synthetic_catalogue_is_labelled_everywhere():
    specs = {t.name: t for t in release_datasets()["probation"]}
    frames = {name: f for (source, name), f in release_frames(rows=30).items() if source == "probation"}
    catalogue = build_catalogue("probation", frames, specs, synthetic=True, title_note="Release x")
    assert catalogue.markdown.startswith("# SYNTHETIC data catalogue: probation")
    assert "<title>SYNTHETIC data catalogue: probation</title>" in catalogue.html
    assert 'class="banner">SYNTHETIC DATA' in catalogue.html and "> **SYNTHETIC DATA" in catalogue.markdown
    md_headings = re.findall(r"^## (.+)$", catalogue.markdown, flags=re.M)
    html_headings = re.findall(r"<h2[^>]*>(.+?)</h2>", catalogue.html)
    assert md_headings[1:] == html_headings[1:] == [f"SYNTHETIC: probation.{name}" for name in specs]
    assert "Release x" in catalogue.markdown and "Release x" in catalogue.html
    real = build_catalogue("probation", frames, specs)
    assert "SYNTHETIC" not in real.markdown and "SYNTHETIC" not in real.html


def test_html_is_self_contained_and_escaped(tmp_path):
    spec = _spec(ReleaseColumn("id_hash", "primary_key", pl.String, "Id"),
                 ReleaseColumn("court", "categorical", pl.String, "Court <b>name</b> & code | pipe"))
    frame = pl.DataFrame({"id_hash": [str(i) for i in range(40)],
                          "court": ["<script>alert(1)</script>"] * 25 + ["A|B"] * 15})
    catalogue = build_catalogue("demo", {"people": frame}, {"people": spec})
    assert "<script" not in catalogue.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in catalogue.html
    assert "Court &lt;b&gt;name&lt;/b&gt; &amp; code" in catalogue.html
    assert not re.search(r"https?://|<link|<script|src=", catalogue.html)
    assert "<style>" in catalogue.html
    assert "A\\|B (15)" in catalogue.markdown  # a pipe in a value does not break the Markdown table
    paths = catalogue.write(tmp_path / "catalogue")
    folder = tmp_path / "catalogue"
    assert paths == {"markdown": folder / "demo.md", "html": folder / "demo.html"}
    assert paths["html"].read_text() == catalogue.html and paths["markdown"].read_text() == catalogue.markdown
