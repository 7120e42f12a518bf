"""The step API every source-system module follows.

A source system is one module (`magistrates`, `crown_court`, `prison`, `probation`, `oasys`,
`family`, `civil`) with

    SOURCE = "<source name in the registry>"
    def build(w: World, journeys: Journeys) -> dict[str, TableData]

`build` returns the system's tables keyed `"<source>/<table>"` and leaves on `journeys` what later
systems need (a Crown Court case starts from a magistrates' outcome, a licence from a prison
release, ...). `simulate.core.SOURCE_STEPS` runs them in order; each system's tables are written
before the next is built, so only the journeys stay in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from datafirst_assets.simulate.crown_court import CrownCases
    from datafirst_assets.simulate.magistrates import MagistratesCases
    from datafirst_assets.simulate.prison import Custody
    from datafirst_assets.simulate.probation import ProbationEvents
    from datafirst_assets.simulate.tables import TableData
    from datafirst_assets.simulate.world import World


@dataclass
class CaseLinks:
    """True case links: magistrates' row `mag_rows[i]` became Crown Court row `crown_rows[i]`."""

    mag_rows: np.ndarray
    crown_rows: np.ndarray
    case_type: np.ndarray
    case_type_codes: tuple[str, ...]


@dataclass
class Journeys:
    """What each system hands to the systems after it, filled in as the steps run."""

    magistrates: MagistratesCases | None = None
    crown_court: CrownCases | None = None
    prison: Custody | None = None
    probation: ProbationEvents | None = None
    case_links: CaseLinks | None = None


class SourceStep(Protocol):
    """A source-system module: its registry name and how to build its tables."""

    SOURCE: str

    def build(self, w: World, journeys: Journeys) -> dict[str, TableData]: ...
