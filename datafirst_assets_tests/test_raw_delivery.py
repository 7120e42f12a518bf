"""Loading deliveries as delivered: every bad-input case gives a clear error or a counted row."""

import json

import polars as pl
import pytest

from datafirst_assets.raw.delivery import DeliveryError, load_raw_table, read_manifest
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.staging.standardise import stage_table
from datafirst_assets_tests.deliveries import to_csv, valid_rows, write_delivery

SOURCE = SOURCES["magistrates"]
TABLE = SOURCE.table("hocas_all_offence")
DATE = "2024-01-31"


def _deliver(tmp_path, content: bytes, **kwargs):
    return write_delivery(tmp_path, SOURCE.key, DATE, files={TABLE.name: content}, **kwargs)


def _load(folder):
    return load_raw_table(SOURCE, TABLE, folder)


def _good_csv(n=4, columns=None, delimiter=","):
    return to_csv(valid_rows(SOURCE, TABLE, n), columns or TABLE.column_names, delimiter)


def test_valid_delivery_keeps_every_row_with_line_numbers(tmp_path):
    frame, meta = _load(_deliver(tmp_path, _good_csv(4)))
    assert frame.height == 4 and meta["rows"] == 4 and meta["malformed_rows"] == 0
    assert frame["_row_number"].to_list() == [2, 3, 4, 5]
    assert frame["extract_date"].unique().to_list() == [DATE]
    assert meta["sha256"] == read_manifest(tmp_path / SOURCE.key / DATE).tables[TABLE.name].sha256


def test_missing_column_names_file_and_column(tmp_path):
    columns = [c for c in TABLE.column_names if c != "offence_date"]
    with pytest.raises(DeliveryError, match=r"hocas_all_offence\.csv: missing column\(s\) \['offence_date'\]"):
        _load(_deliver(tmp_path, _good_csv(columns=columns)))


def test_extra_column_is_named(tmp_path):
    rows = [dict(r, surprise="x") for r in valid_rows(SOURCE, TABLE, 2)]
    with pytest.raises(DeliveryError, match=r"unexpected column\(s\) \['surprise'\]"):
        _load(_deliver(tmp_path, to_csv(rows, [*TABLE.column_names, "surprise"])))


def test_reordered_columns_are_read_by_name(tmp_path):
    columns = list(reversed(TABLE.column_names))
    frame, _ = _load(_deliver(tmp_path, _good_csv(3, columns=columns)))
    assert frame.select(TABLE.column_names).rows() == [
        tuple(r[c] for c in TABLE.column_names) for r in valid_rows(SOURCE, TABLE, 3)]


def test_wrong_delimiter_is_diagnosed(tmp_path):
    with pytest.raises(DeliveryError, match="looks delimited by ';'"):
        _load(_deliver(tmp_path, _good_csv(delimiter=";")))


def test_wrong_encoding_in_header_is_an_error(tmp_path):
    content = _good_csv().replace(b"offence_id", "offence_id\u00e9".encode("utf-16"), 1)
    with pytest.raises(DeliveryError, match="wrong encoding|not valid utf-8|UTF-16"):
        _load(_deliver(tmp_path, content))


def test_undecodable_row_is_kept_and_quarantined(tmp_path):
    content = _good_csv(3).replace(b"OFF00001", b"OFF\xff\xfe001")
    frame, meta = _load(_deliver(tmp_path, content))
    assert frame.height == 3 and meta["malformed_rows"] == 1
    result = stage_table(frame, SOURCE, TABLE)
    assert result.staged.height == 2 and result.quarantine.height == 1
    assert "INVALID ENCODING" in result.quarantine["reason"][0]
    assert result.quarantine["_row_number"][0] == 3


def test_empty_file(tmp_path):
    with pytest.raises(DeliveryError, match="empty file"):
        _load(_deliver(tmp_path, b""))


def test_ragged_rows_are_quarantined_with_line_and_raw_text(tmp_path):
    lines = _good_csv(4).decode().splitlines()
    lines[2] = ",".join(lines[2].split(",")[:3])  # too few fields
    lines[4] = lines[4] + ",extra"  # too many
    frame, meta = _load(_deliver(tmp_path, ("\n".join(lines) + "\n").encode()))
    assert frame.height == 4 and meta["malformed_rows"] == 2
    result = stage_table(frame, SOURCE, TABLE)
    assert sorted(result.quarantine["_row_number"].to_list()) == [3, 5]
    assert result.quarantine.filter(pl.col("_row_number") == 3)["raw_record"][0] == lines[2]
    assert result.staged.height + result.quarantine.height == frame.height


def test_truncated_file_fails_its_checksum(tmp_path):
    folder = _deliver(tmp_path, _good_csv(6))
    path = folder / f"{TABLE.name}.csv"
    path.write_bytes(path.read_bytes()[:-25])
    with pytest.raises(DeliveryError, match="does not match the manifest"):
        _load(folder)


def test_truncated_inside_a_quote_is_an_error_even_with_matching_manifest(tmp_path):
    content = _good_csv(3) + b'OFF99999,REF1,"unterminated'
    with pytest.raises(DeliveryError, match="unterminated quote"):
        _load(_deliver(tmp_path, content))


def test_manifest_row_count_mismatch(tmp_path):
    with pytest.raises(DeliveryError, match="manifest says 7"):
        _load(_deliver(tmp_path, _good_csv(4), manifest_rows={TABLE.name: 7}))


def test_missing_and_malformed_manifest(tmp_path):
    folder = _deliver(tmp_path, _good_csv(2))
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(DeliveryError, match="malformed manifest"):
        _load(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(DeliveryError, match="no manifest.json"):
        _load(folder)


def test_manifest_for_another_source_is_rejected(tmp_path):
    folder = _deliver(tmp_path, _good_csv(2))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["source"] = "prison"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DeliveryError, match="manifest is for prison/2024-01-31, but the folder is magistrates"):
        _load(folder)
