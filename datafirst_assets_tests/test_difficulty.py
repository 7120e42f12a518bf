"""`datafirst simulate --difficulty hard`: twice the identifier errors and gaps, more shared names."""

import polars as pl
import pytest

from datafirst_assets.cli import build_parser
from datafirst_assets.simulate import simulate
from datafirst_assets.simulate.config import ERROR_NAMES, NOT_ERRORS, SimulationConfig


def test_hard_doubles_every_error_and_missing_rate():
    standard, hard = SimulationConfig.for_difficulty("standard"), SimulationConfig.for_difficulty("hard")
    assert standard == SimulationConfig()
    for source, prof in standard.errors.items():
        for name in ERROR_NAMES:
            before, after = getattr(prof, name), getattr(hard.errors[source], name)
            if name in NOT_ERRORS:
                assert after == before
            else:
                assert after == max(before, min(0.95, 2 * before)), (source, name)
    assert hard.errors["civil"].dob_missing == 0.95 and hard.errors["family"].dob_missing == 0.24
    assert hard.name_concentration > standard.name_concentration
    hard.validate()
    with pytest.raises(ValueError, match="difficulty"):
        SimulationConfig.for_difficulty("nightmare")
    assert build_parser().parse_args(["simulate", "--difficulty", "hard"]).difficulty == "hard"


@pytest.mark.parametrize("difficulty", ["standard", "hard"])
def test_both_difficulties_simulate(tmp_path, difficulty):
    summary = simulate(people=400, seed=5, extracts=1, out=tmp_path / "landing", truth_out=tmp_path / "truth",
                       config=SimulationConfig.for_difficulty(difficulty))
    assert summary["person_records"] > 400
    people = pl.read_parquet(tmp_path / "truth" / "people.parquet").filter(~pl.col("is_company"))
    top_share = people["surname"].value_counts(sort=True)["count"].head(5).sum() / people.height
    # common names are shared by more people when it is hard
    assert top_share > (0.10 if difficulty == "hard" else 0.03)


def test_the_interval_between_deliveries_is_a_command_line_option(tmp_path):
    """`bench_incremental_graph.py` asks for 90 days so the new extract is about 1% of the rows."""
    from datafirst_assets.cli import main

    assert main(["simulate", "--people", "300", "--seed", "3", "--extracts", "2", "--extract-interval-days", "90",
                 "--out", str(tmp_path / "landing"), "--truth", str(tmp_path / "truth")]) == 0
    dates = sorted({p.name for p in (tmp_path / "landing").glob("*/*") if p.is_dir()})
    assert dates == ["2024-01-31", "2024-04-30"]
