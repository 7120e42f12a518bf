"""`simulate --malformed-rate`: realistic bad rows, each one quarantined with its reason; none at 0."""

import json

import pytest

from datafirst_assets.raw.delivery import delivery_path, load_raw_table, survey_landing
from datafirst_assets.simulate import simulate
from datafirst_assets.simulate.malformed import impossible_date
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.staging.standardise import stage_table

PEOPLE, SEED = 400, 3


def _simulate(root, rate):
    return simulate(people=PEOPLE, seed=SEED, extracts=2, out=root / "landing", truth_out=root / "truth",
                    malformed_rate=rate)


def _manifests(landing):
    return {p.relative_to(landing).as_posix(): json.loads(p.read_text()) for p in sorted(landing.rglob("manifest.json"))}


def test_rate_zero_writes_exactly_what_the_simulator_always_wrote(tmp_path):
    plain = simulate(people=PEOPLE, seed=SEED, extracts=2, out=tmp_path / "a" / "landing", truth_out=tmp_path / "a" / "t")
    zero = _simulate(tmp_path / "b", 0.0)
    assert zero["malformed_rows"] == {} and plain["total_records"] == zero["total_records"]
    assert _manifests(tmp_path / "a" / "landing") == _manifests(tmp_path / "b" / "landing")  # sha256 of every file


def test_malformed_rows_are_each_quarantined_with_a_reason(tmp_path):
    summary = _simulate(tmp_path, 0.05)
    spoiled = summary["malformed_rows"]
    assert set(spoiled) == {"bad_date", "stray_delimiter", "junk_code", "overlong", "control_char"}
    delivered = quarantined = staged = 0
    reasons = set()
    for source, extract_date in survey_landing(tmp_path / "landing", SOURCES).deliveries:
        spec = SOURCES[source]
        for table in spec.tables:
            raw, _ = load_raw_table(spec, table, delivery_path(tmp_path / "landing", source, extract_date))
            result = stage_table(raw, spec, table)
            delivered += raw.height
            staged += result.staged.height
            quarantined += result.quarantine.height
            reasons |= {r.split(": ", 1)[1].split(" ")[0] for r in result.quarantine["reason"]}
    assert delivered == summary["total_records"] == staged + quarantined
    assert quarantined == sum(spoiled.values())  # every spoiled row, and nothing else
    assert {"unparseable", "unknown", "control", "TOO"} <= reasons


@pytest.mark.parametrize("date_format, expected", [
    ("%d/%m/%Y", "30/02/2024"), ("%Y-%m-%d", "2024-02-30"), ("%Y%m%d", "20240230")])
def test_impossible_date_in_each_source_format(date_format, expected):
    assert impossible_date(date_format) == expected
