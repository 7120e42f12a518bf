"""Releases on disk: round trip with checksums, content-derived ids, synthetic labelling, atomic writes."""

import json
import threading
from collections.abc import Mapping

import polars as pl
import pytest

from datafirst_assets.catalogue import build_catalogues
from datafirst_assets.cli import main
from datafirst_assets.deidentify.release_spec import release_tables
from datafirst_assets.release import (
    ReleaseError,
    example_queries,
    open_release,
    parquet_metadata,
    read_manifest,
    release_path,
    verify_release,
    write_release,
)
from datafirst_assets.release import publish
from datafirst_assets.common.hashing import sha256_file
from datafirst_assets.synthetic.generate import synthesise_release
from datafirst_assets.synthetic.summaries import summarise_release
from datafirst_assets_tests.release_fixtures import release_frames

DATES = ["2024-01-31", "2024-03-31", "2024-02-29"]


@pytest.fixture(scope="module")
def frames():
    return release_frames(rows=60, seed=1)


@pytest.fixture(scope="module")
def catalogues(frames):
    return build_catalogues(frames, release_tables())


@pytest.fixture(scope="module")
def synthetic_catalogues(frames):
    return build_catalogues(frames, release_tables(), synthetic=True)


def _publish(root, frames, catalogues, kind="deidentified", **options):
    options = {"extract_dates": DATES, "model_versions": {"magistrates": "m-1", "prison": "p-2"},
               "key_is_development": True, **options}
    return write_release(root, kind, frames, catalogues, **options)


def _leftovers(root):
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_tables_round_trip_with_checksums_that_verify(tmp_path, frames, catalogues):
    info = _publish(tmp_path, frames, catalogues, extra={"pii_gate": "passed"})
    assert info.path == tmp_path / info.release_id and info.release_id.startswith("deidentified-2024-03-31-")
    manifest = read_manifest(info.path)
    assert manifest == json.loads(json.dumps(info.manifest))
    assert manifest["extract_dates"] == sorted(DATES) and manifest["extra"] == {"pii_gate": "passed"}
    assert manifest["model_versions"] == {"magistrates": "m-1", "prison": "p-2"}
    assert manifest["pseudonymisation_key"] == "development key (DATAFIRST_PSEUDONYMISATION_KEY unset)"
    assert manifest["created_at"].endswith("Z")
    assert [(t["source"], t["table"]) for t in manifest["tables"]] == list(release_tables())
    for entry in manifest["tables"]:
        key = (entry["source"], entry["table"])
        file = info.path / entry["path"]
        assert entry["path"] == f"tables/{key[0]}/{key[1]}.parquet"
        assert entry["sha256"] == sha256_file(file)
        back = pl.read_parquet(file)
        assert back.equals(frames[key]) and back.schema == frames[key].schema, key
        assert entry["rows"] == back.height and entry["columns"] == back.columns
        meta = parquet_metadata(file)
        assert meta["synthetic"] == "false" and meta["release_id"] == info.release_id
        assert (meta["source"], meta["table"]) == key
    assert verify_release(info.path) == []
    assert {p.name for p in (info.path / "catalogue").iterdir()} == {
        f"{d}.{ext}" for d in catalogues for ext in ("md", "html")}
    readme = (info.path / "README.md").read_text()
    assert info.release_id in readme and "linking.xjs_lookup" in readme
    assert all(example.sql.strip() in readme for example in example_queries())
    # Tampering is caught.
    victim = info.path / manifest["tables"][0]["path"]
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    assert verify_release(info.path) == [
        f"{manifest['tables'][0]['path']}: checksum differs from the manifest"]
    with pytest.raises(ValueError, match="does not verify"):
        open_release(info.path, verify=True)


def test_identical_content_gives_the_same_id_and_replaces_the_release(tmp_path, frames, catalogues):
    first = _publish(tmp_path, frames, catalogues)
    again = _publish(tmp_path, {k: f.clone() for k, f in reversed(frames.items())}, catalogues,
                     key_is_development=False, extract_dates=list(reversed(DATES)))
    assert again.release_id == first.release_id
    assert again.manifest["pseudonymisation_key"] == "from environment"
    assert read_manifest(first.path)["pseudonymisation_key"] == "from environment"  # replaced in place
    assert verify_release(again.path) == [] and _leftovers(tmp_path) == []
    changed = dict(frames)
    key = ("prison", "nomis_flatfile")
    changed[key] = frames[key].with_columns(pl.col("sex").fill_null("U"))
    other = _publish(tmp_path, changed, catalogues)
    assert other.release_id != first.release_id and other.release_id.startswith("deidentified-2024-03-31-")
    later = _publish(tmp_path, frames, catalogues, extract_dates=DATES + ["2024-04-30"])
    assert later.release_id.startswith("deidentified-2024-04-30-")
    assert later.release_id.split("-")[-1] == first.release_id.split("-")[-1]
    assert (tmp_path / "LATEST_deidentified").read_text().strip() == later.release_id
    assert release_path(tmp_path, "deidentified") == later.path
    assert release_path(tmp_path, "deidentified", first.release_id) == first.path
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted(
        {first.release_id, other.release_id, later.release_id})


def test_synthetic_files_are_named_and_tagged_synthetic(tmp_path, frames, catalogues, synthetic_catalogues):
    with pytest.raises(ReleaseError, match="catalogues labelled not synthetic in a synthetic release"):
        _publish(tmp_path, frames, catalogues, kind="synthetic")
    with pytest.raises(ReleaseError, match="labelled synthetic in a deidentified release"):
        _publish(tmp_path, frames, synthetic_catalogues)
    info = _publish(tmp_path, frames, synthetic_catalogues, kind="synthetic")
    assert info.release_id.startswith("synthetic-2024-03-31-") and info.manifest["synthetic"] is True
    files = sorted((info.path / "tables").rglob("*.parquet"))
    assert len(files) == len(frames)
    assert all(f.name.endswith(".synthetic.parquet") for f in files)
    assert all(parquet_metadata(f)["synthetic"] == "true" for f in files)
    assert (info.path / "README.md").read_text().startswith("# SYNTHETIC research release")
    assert (info.path / "catalogue" / "magistrates.md").read_text().startswith("# SYNTHETIC")
    assert release_path(tmp_path, "synthetic") == info.path
    with pytest.raises(FileNotFoundError, match="no deidentified release"):
        release_path(tmp_path, "deidentified")
    with pytest.raises(ValueError, match="is synthetic, not deidentified"):
        release_path(tmp_path, "deidentified", info.release_id)


def _expected_case_links(frames) -> int:
    links = frames[("linking", "case_lookup")]
    mags = frames[("magistrates", "hocas_flatfile")].select("defendant_case_id_hash")
    crown = frames[("crown_court", "xhibit_flatfile")].select("defendant_on_case_id_hash")
    return links.join(mags, on="defendant_case_id_hash").join(crown, on="defendant_on_case_id_hash").height


def _expected_later_custody(frames) -> int:
    lookup = frames[("linking", "xjs_lookup")]

    def people(source, person, date):
        ids = lookup.filter(pl.col("source_dataset") == source).select(
            pl.col("dataset_person_id").alias(person), pl.col("xjs_person_id_medium").alias("person"))
        return frames[(source, table_of[source])].join(ids, on=person).select("person", date)

    table_of = {"magistrates": "hocas_flatfile", "prison": "nomis_flatfile"}
    defendants = people("magistrates", "estimated_defendant_id", "first_hearing_date")
    prisoners = people("prison", "estimated_offender_id", "reception_date")
    both = defendants.join(prisoners, on="person").filter(
        pl.col("reception_date") >= pl.col("first_hearing_date"))
    return both.get_column("person").n_unique()


def test_the_documented_joins_run_unchanged_on_both_kinds(tmp_path, frames, catalogues):
    # the synthetic release is generated from the de-identified one's summaries, as the pipeline
    # does: other rows, same tables and keys
    synthetic = synthesise_release(summarise_release(frames), seed=0)
    releases = {
        "deidentified": (frames, catalogues),
        "synthetic": (synthetic, build_catalogues(synthetic, release_tables(), synthetic=True)),
    }
    answers = {}
    for kind, (tables, cats) in releases.items():
        con = open_release(_publish(tmp_path, tables, cats, kind=kind).path, verify=True)
        rows = tables[("magistrates", "hocas_flatfile")].height
        assert con.sql("SELECT count(*) FROM magistrates.hocas_flatfile").fetchall() == [(rows,)]
        answers[kind] = [con.sql(example.sql).fetchall() for example in example_queries()]
        con.close()
        # each release's answers agree with its own tables, joined without SQL
        offences, case_links, custody, *_ = answers[kind]
        assert sum(n for *_, n in offences) == tables[("magistrates", "hocas_all_offence")].height, kind
        assert sum(n for *_, n in case_links) == _expected_case_links(tables), kind
        assert custody == [(_expected_later_custody(tables),)], kind
    assert answers["deidentified"] != answers["synthetic"]  # two releases, not one published twice
    for ours, theirs in zip(answers["deidentified"], answers["synthetic"], strict=True):
        assert {len(row) for row in ours} == {len(row) for row in theirs} or not theirs  # same columns
    _, case_links, custody, _, requirements, risk = answers["deidentified"]
    assert requirements and risk  # every documented join returns rows
    assert sum(n for *_, n in case_links) > 0 and custody[0][0] > 0


def test_failure_mid_write_leaves_no_release(tmp_path, frames, catalogues, monkeypatch):
    real_write = publish._write_parquet
    calls = []

    def failing(frame, path, metadata):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        real_write(frame, path, metadata)

    monkeypatch.setattr(publish, "_write_parquet", failing)
    with pytest.raises(OSError, match="disk full"):
        _publish(tmp_path, frames, catalogues)
    # files are written `WRITERS` at a time: the one after the failing one may have started too
    assert 3 <= len(calls) <= 2 + publish.WRITERS and calls[0].exists() is False  # written files went with their folder
    assert list(tmp_path.iterdir()) == []
    # A failed re-publish of an existing release leaves the existing one as it was.
    monkeypatch.setattr(publish, "_write_parquet", real_write)
    info = _publish(tmp_path, frames, catalogues)
    before = read_manifest(info.path)
    calls.clear()
    monkeypatch.setattr(publish, "_write_parquet", failing)
    with pytest.raises(OSError, match="disk full"):
        _publish(tmp_path, frames, catalogues, key_is_development=False)
    assert read_manifest(info.path) == before and verify_release(info.path) == []
    assert _leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "LATEST_deidentified", info.release_id]


def test_inconsistent_inputs_are_refused(tmp_path, frames, catalogues):
    bad = dict(frames)
    bad[("civil", "cases")] = frames[("civil", "cases")].with_columns(surname=pl.lit("SMITH"))
    with pytest.raises(ReleaseError, match=r"civil\.cases: .*surname"):
        _publish(tmp_path, bad, catalogues)
    with pytest.raises(ReleaseError, match="datasets without a catalogue: oasys"):
        _publish(tmp_path, frames, {k: v for k, v in catalogues.items() if k != "oasys"})
    with pytest.raises(ReleaseError, match="extract dates"):
        _publish(tmp_path, frames, catalogues, extract_dates=[])
    with pytest.raises(ReleaseError, match="kind"):
        _publish(tmp_path, frames, catalogues, kind="raw")
    assert list(tmp_path.iterdir()) == []


def test_release_sql_command(tmp_path, frames, catalogues, capsys):
    info = _publish(tmp_path / "releases", frames, catalogues)
    sql = "SELECT source_dataset, count(*) AS n FROM linking.xjs_lookup GROUP BY ALL ORDER BY 1"
    assert main(["release-sql", "--data-dir", str(tmp_path), "--csv", sql]) == 0
    out = capsys.readouterr()
    expected = frames[("linking", "xjs_lookup")].group_by("source_dataset").len("n").sort("source_dataset")
    assert pl.read_csv(out.out.encode()).equals(expected.cast({"n": pl.Int64}))
    assert info.release_id in out.err
    assert main(["release-sql", "--release", str(info.path), "SELECT count(*) AS n FROM civil.cases"]) == 0
    assert "60" in capsys.readouterr().out
    assert main(["release-sql", "--data-dir", str(tmp_path), "--kind", "synthetic", "SELECT 1"]) == 1
    assert "no synthetic release" in capsys.readouterr().err
    assert main(["release-sql", "--release", str(info.path), "SELECT * FROM nowhere"]) == 1


class _ReadOnUse(Mapping):
    """Frames handed over as a release asset hands them (a mapping read on use, not a dict, so the
    release spills, reads ahead and writes files concurrently), recording the thread each is read in;
    `fail`: the key whose read raises."""

    def __init__(self, frames, fail=None):
        self._frames, self._fail, self.threads = frames, fail, {}

    def __getitem__(self, key):
        self.threads.setdefault(key, []).append(threading.current_thread().name)
        if key == self._fail:
            raise OSError(f"cannot read {key}")
        return self._frames[key]

    def __contains__(self, key):  # as `LoadedOnUse` answers it: without reading the table
        return key in self._frames

    def __iter__(self):
        return iter(self._frames)

    def __len__(self):
        return len(self._frames)


def _files(info):
    return {p.relative_to(info.path).as_posix(): sha256_file(p) for p in sorted(info.path.rglob("*"))
            if p.is_file() and p.name not in ("manifest.json", "README.md")}


def _without_time(manifest):
    return {k: v for k, v in manifest.items() if k != "created_at"}


def test_reading_ahead_and_writing_files_concurrently_publish_what_one_at_a_time_does(tmp_path, frames, catalogues,
                                                                                    monkeypatch):
    """Each table read, checksummed and written in another thread gives the very release (id, every
    file's bytes, manifest) that reading and writing them one at a time in order gives."""
    written = []
    write = publish._write_parquet
    monkeypatch.setattr(publish, "_write_parquet",
                        lambda table, path, metadata: written.append(threading.current_thread().name)
                        or write(table, path, metadata))
    monkeypatch.setattr(publish, "WRITERS", 2)
    ahead = _ReadOnUse(frames)
    concurrent = _publish(tmp_path / "concurrent", ahead, catalogues)
    readers = {name for names in ahead.threads.values() for name in names}
    assert any(name.startswith("release-reader") for name in readers)  # tables were read ahead
    assert len([name for name in written if name.startswith("release-writer")]) == len(frames)

    monkeypatch.setattr(publish, "READ_AHEAD", False)
    monkeypatch.setattr(publish, "WRITERS", 1)
    in_order = _ReadOnUse(frames)
    one_at_a_time = _publish(tmp_path / "in_order", in_order, catalogues)
    assert not any(name.startswith("release-reader") for names in in_order.threads.values() for name in names)

    assert concurrent.release_id == one_at_a_time.release_id
    assert _files(concurrent) == _files(one_at_a_time) and len(_files(concurrent)) > len(frames)
    assert _without_time(concurrent.manifest) == _without_time(one_at_a_time.manifest)
    for entry in concurrent.manifest["tables"]:  # each file holds its own table
        assert pl.read_parquet(concurrent.path / entry["path"]).equals(frames[(entry["source"], entry["table"])])
    assert verify_release(concurrent.path) == [] and _leftovers(tmp_path / "concurrent") == []


def test_a_table_looked_up_out_of_order_is_computed_then_and_the_one_read_ahead_kept(tmp_path, frames):
    keys = list(frames)[:4]
    tables = publish._Checksummed(_ReadOnUse({k: frames[k] for k in keys}), tmp_path / "spill", ahead=keys)
    try:
        assert tables[keys[0]].equals(frames[keys[0]])  # starts reading keys[1]
        assert tables[keys[2]].equals(frames[keys[2]])  # out of order: computed on lookup
        assert tables[keys[1]].equals(frames[keys[1]]) and tables.prefetched == 1
        assert tables[keys[3]].equals(frames[keys[3]])
        for key in keys:
            assert tables.checksum(key) == publish._content_sha256(frames[key])
            assert tables.arrow(key).equals(publish._arrow(frames[key]))
    finally:
        tables.close()


def test_a_table_that_fails_to_be_read_ahead_publishes_nothing(tmp_path, frames, catalogues):
    failing = _ReadOnUse(frames, fail=list(frames)[2])
    with pytest.raises(OSError, match="cannot read"):
        _publish(tmp_path, failing, catalogues)
    assert failing.threads[list(frames)[2]][0].startswith("release-reader")  # it failed in the reader
    assert list(tmp_path.iterdir()) == []  # no release, no staging folder, no spill
