"""benchmarks/compare_extracts.py: per-step means of two versions' extract runs."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_extracts.py"


def _module():
    spec = importlib.util.spec_from_file_location("compare_extracts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(path: Path, wall: float, steps: list[tuple[str, float]]) -> Path:
    path.write_text(json.dumps({
        "incremental": {"wall_seconds": wall, "cpu_seconds": wall * 1.5, "peak_gib": 5.0},
        "incremental_steps": [{"job": "link_datasets", "step": s, "seconds": x} for s, x in steps]}))
    return path


def test_a_step_run_twice_is_summed_and_a_step_missing_from_a_run_counts_nothing_there(tmp_path):
    compare = _module()
    _, steps = compare.load(_result(tmp_path / "a.json", 10, [("stage", 1.0), ("stage", 2.0), ("xjs", 4.0)]))
    assert steps == {"stage": 3.0, "xjs": 4.0}
    assert compare.mean_steps([{"xjs": 4.0}, {"xjs": 2.0, "case": 1.0}]) == {"case": 0.5, "xjs": 3.0}


def test_the_largest_change_either_way_comes_first(tmp_path):
    compare = _module()
    rows = compare.differences({"case": 4.5, "xjs": 26.0, "release": 13.0}, {"case": 2.5, "xjs": 26.5, "release": 16.0})
    assert [row[0] for row in rows] == ["release", "case", "xjs"]
    assert rows[1] == ("case", 4.5, 2.5, -2.0)


def test_it_prints_each_run_and_the_mean_difference(tmp_path):
    a = [_result(tmp_path / f"a{i}.json", w, [("case", 4.0 + i)]) for i, w in enumerate((110.0, 114.0))]
    b = [_result(tmp_path / f"b{i}.json", w, [("case", 2.0 + i)]) for i, w in enumerate((100.0, 104.0))]
    out = subprocess.run([sys.executable, str(SCRIPT), "--a", *map(str, a), "--b", *map(str, b)],
                         capture_output=True, text=True, check=True).stdout
    assert "mean wall: A 112.0 s, B 102.0 s, B - A -10.0 s" in out
    assert "case" in out and "-2.00" in out
