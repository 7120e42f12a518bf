"""Analytics-ready tables derived from a release (de-identified or synthetic), never from raw or staged data.

    person_journeys.py            derived/person_journeys: one row per cross-justice person
    repeat_offending_profile.py   derived/repeat_offending_profile: repeat rates, small cells suppressed
    report.py                     the profile as a publication-style Markdown / HTML page
    spec.py                       column descriptions -> pandera schema and catalogue entry

Each function takes `(source, table) -> frame` of release tables, so the same code runs on
the de-identified release and on the synthetic one (same columns, types and joins).
"""

from __future__ import annotations

from datafirst_assets.derived.person_journeys import PERSON_JOURNEYS
from datafirst_assets.derived.repeat_offending_profile import REPEAT_OFFENDING_PROFILE
from datafirst_assets.derived.spec import DERIVED, DerivedTable

DERIVED_TABLES: tuple[DerivedTable, ...] = (PERSON_JOURNEYS, REPEAT_OFFENDING_PROFILE)


def derived_release_tables() -> dict:
    """(`derived`, table) -> ReleaseTable, the shape the release catalogue builder documents datasets from."""
    return {(DERIVED, t.name): t.as_release_table() for t in DERIVED_TABLES}
