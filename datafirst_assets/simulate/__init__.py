"""Source-systems simulator: a synthetic population, its justice journeys, and raw extracts.

    from datafirst_assets.simulate import simulate, SimulationConfig
    summary = simulate(people=20_000, seed=1, extracts=3, out=Path("data/landing"),
                       truth_out=Path("data/truth"))

Deliveries: `out/<source>/<YYYY-MM-DD>/<table>.csv` + `manifest.json` for every source and
table of `datafirst_assets.sources.registry`. Truth (never read by linkage): `people.parquet`,
`person_records.parquet`, `case_links.parquet`, `config.json` in `truth_out`.
Earlier simulated deliveries (date-named folders under `out/<source>/`) are replaced.
Knobs: `SimulationConfig` (population, journeys, coverage) and its per-source `ErrorProfile`s
and subgroup multipliers; `calibration.agreement_report` measures a run against its truth.
"""

from datafirst_assets.simulate.config import ErrorProfile, SimulationConfig
from datafirst_assets.simulate.core import default_truth_dir, simulate
from datafirst_assets.simulate.identifiers import JUNK_PNCS, is_junk_pnc, is_valid_pnc, pnc_check_letter

__all__ = [
    "JUNK_PNCS",
    "ErrorProfile",
    "SimulationConfig",
    "default_truth_dir",
    "is_junk_pnc",
    "is_valid_pnc",
    "pnc_check_letter",
    "simulate",
]
