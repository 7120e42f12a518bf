"""Release-shaped stand-in tables, for tests and benchmarks of synthetic generation.

    tables = fabricate_release(people=1_000_000, seed=1)   # (source, table) -> frame shaped like the release

NOT the real release and not made by the de-identification pipeline (which is far slower at a
million people): every table has the release spec's columns and types, hashed keys of the right
shape that join, per-dataset person ids, and a cross-justice lookup and case lookup over them,
with sizes per person taken from the simulator. Values are plausible, and unlike the synthetic
tables they keep some structure (a person's sex, ethnicity, area and age agree across rows),
so a synthetic copy of them has something to lose. Category frequencies are skewed, so small
categories exist for disclosure control to suppress.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from datafirst_assets.deidentify.release_spec import ReleaseColumn, ReleaseTable, release_tables
from datafirst_assets.sources.registry import ETHNICITY_CODES, SOURCES
from datafirst_assets.synthetic.generate import random_hex
from datafirst_assets.synthetic.tables import (
    CASE_LOOKUP_ID,
    XJS_LOOKUP_ID,
    TableId,
    is_one_to_one,
    parent_key,
    source_tables,
    sources,
)

# Rows per person of the simulated population, measured on `simulate(people=10_000, seed=1,
# extracts=1)`: (per-dataset persons, rows of the root table) per simulated person.
ROOTS = {
    ("magistrates", "hocas_flatfile"): (0.733, 1.284),
    ("crown_court", "xhibit_flatfile"): (0.082, 0.092),
    ("prison", "nomis_flatfile"): (0.175, 0.259),
    ("probation", "delius_flatfile"): (0.278, 0.526),
    ("oasys", "assessments_metadata"): (0.273, 0.846),
    ("family", "family_cases"): (0.144, 0.079),
    ("civil", "cases"): (0.189, 0.250),
}
# Children per parent row, same measurement.
CHILDREN = {
    "hocas_all_offence": 1.81, "xhibit_all_off_disp": 2.03, "nomis_movements": 2.52,
    "nomis_safety_in_custody": 0.20, "delius_rqmnt": 0.70, "delius_lic_condition": 0.75, "delius_psr": 0.37,
    "delius_pss": 0.30, "family_people": 2.95, "case_events": 3.57, "hearings": 0.58, "judgments": 0.74,
    "warrants": 0.14, "parties": 2.10, "oasys_assessments_details_bcs": 0.11,
    "oasys_assessments_details_core_risk": 0.97, "oasys_assessments_details_isp": 1.49,
    "oasys_assessments_details_rm2000": 0.04, "oasys_assessments_details_rmp": 1.01,
    "oasys_assessments_details_rosh": 0.93,
}
VOCABULARY = {"offence_code": 400, "court_code": 250, "originating_court_code": 250, "establishment_code": 120,
              "from_establishment": 150, "to_establishment": 150, "reason": 30, "provider_code": 60,
              "keys_agreed": 12}
AREAS = tuple(a + b for a in "BCDEGHLMNPSTW" for b in "ABDEHLMNORSTY")[:120]
FIRST_DAY, LAST_DAY = date(2010, 1, 1), date(2023, 12, 31)


def _zipf(size: int, exponent: float = 1.2) -> np.ndarray:
    w = 1.0 / np.arange(1, size + 1) ** exponent
    return w / w.sum()


class _Population:
    def __init__(self, people: int, rng: np.random.Generator):
        self.n = people
        self.sex = rng.choice(np.array(["M", "F"]), people, p=[0.8, 0.2])
        self.ethnicity = rng.choice(np.array(ETHNICITY_CODES), people, p=_zipf(len(ETHNICITY_CODES), 1.5))
        self.area = rng.choice(np.array(AREAS), people, p=_zipf(len(AREAS), 0.8))
        self.birth_year = rng.integers(1945, 2006, people)


def fabricate_release(people: int, seed: int = 1) -> dict[TableId, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    population = _Population(people, rng)
    tables: dict[TableId, pl.DataFrame] = {}
    owners: dict[TableId, np.ndarray] = {}  # population index of each row's person (-1: none)
    person_ids: dict[str, np.ndarray] = {}  # population index -> per-dataset person id (0: not in dataset)
    for source in sources():
        for spec in source_tables(source):
            frame, owner = _fabricate_table(spec, tables, owners, person_ids, population, rng)
            tables[(source, spec.name)], owners[(source, spec.name)] = frame, owner
    tables[XJS_LOOKUP_ID] = _xjs_lookup(person_ids, rng)
    tables[CASE_LOOKUP_ID] = _case_lookup(tables, rng)
    return tables


def _fabricate_table(spec: ReleaseTable, tables, owners, person_ids, population: _Population,
                     rng: np.random.Generator) -> tuple[pl.DataFrame, np.ndarray]:
    tid = (spec.source, spec.name)
    columns: dict[str, pl.Series] = {}
    link = parent_key(spec)
    if link is None:
        share, rows = ROOTS[tid]
        in_dataset = rng.permutation(population.n)[: int(round(share * population.n))]
        if spec.person_key:  # one row per person, then extra rows
            extra = rng.choice(in_dataset, max(0, int(round(rows * population.n)) - in_dataset.size))
            owner = rng.permutation(np.concatenate([in_dataset, extra]))
        else:  # cases: people come in through a child table
            owner = np.full(int(round(rows * population.n)), -1)
            person_ids[spec.source] = _dataset_ids(population.n, in_dataset, rng)
    else:
        fk, parent_name, parent_col = link
        parent = tables[(spec.source, parent_name)]
        mean = CHILDREN[spec.name]
        counts = rng.binomial(1, min(mean, 1.0), parent.height) if is_one_to_one(spec) \
            else rng.poisson(mean, parent.height)
        rows = np.repeat(np.arange(parent.height), counts)
        columns[fk] = parent[parent_col].gather(rows)
        owner = owners[(spec.source, parent_name)][rows]
        if spec.person_key:  # parties of cases: people of the dataset, some on several cases
            pool = np.flatnonzero(person_ids[spec.source])
            owner = np.where(rng.random(rows.size) < 0.5, pool[np.arange(rows.size) % pool.size],
                             rng.choice(pool, rows.size))
    n = owner.size
    if spec.person_key and spec.source not in person_ids:
        person_ids[spec.source] = _dataset_ids(population.n, np.unique(owner), rng)
    event_day = _days(n, rng)
    for column in spec.columns:
        if column.name not in columns:
            columns[column.name] = _column(spec, column, n, owner, event_day, person_ids, population, rng)
    if spec.name == "parties":  # companies have no per-dataset person
        company = columns["party_type"] == "COMPANY"
        columns[spec.person_key] = columns[spec.person_key].set(company, None)
        columns["age_at_issue"] = columns["age_at_issue"].set(company, None)
        owner = np.where(company.to_numpy(), -1, owner)
    if spec.person_key:  # the dataset's persons are the ones its person table shows
        shown = np.zeros(population.n, dtype=bool)
        shown[owner[owner >= 0]] = True
        person_ids[spec.source] = np.where(shown, person_ids[spec.source], 0)
    frame = pl.DataFrame([columns[c].alias(c) for c in spec.column_names]).cast(spec.schema())
    return frame, owner


def _dataset_ids(people: int, members: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ids = np.zeros(people, dtype=np.int64)
    ids[members] = rng.permutation(members.size) + 1
    return ids


def _days(n: int, rng: np.random.Generator) -> np.ndarray:
    first = (FIRST_DAY - date(1970, 1, 1)).days
    return rng.integers(first, first + (LAST_DAY - FIRST_DAY).days + 1, n)


def _column(spec: ReleaseTable, column: ReleaseColumn, n: int, owner: np.ndarray, event_day: np.ndarray,
            person_ids: dict, population: _Population, rng: np.random.Generator) -> pl.Series:
    has_person = owner >= 0
    who = np.where(has_person, owner, 0)
    name, role = column.name, column.role
    if role == "primary_key":
        return random_hex(n, 64, rng)
    if role == "person_key":
        return pl.Series(np.where(has_person, person_ids[spec.source][who], 0)).replace(0, None)
    if role == "system_id":
        if name.startswith(("pnc", "cro", "crn", "prison_number", "offender_pk")):  # one per person, often missing
            per_person = random_hex(population.n, 64, rng)
            return per_person.gather(who).set(pl.Series(~has_person | (rng.random(n) < 0.25)), None)
        shared = max(1, int(n / 1.2)) if name.startswith("case") else n
        return random_hex(shared, 64, rng).gather(rng.integers(0, shared, n) if shared < n else np.arange(n))
    if role == "age":
        year = 1970 + event_day // 365.25
        return _nulls(pl.Series((year - population.birth_year[who]).astype(np.int32)), ~has_person, rng, 0.01)
    if role == "area":
        return _nulls(pl.Series(population.area[who]), ~has_person, rng, 0.05)
    if name in ("sex", "gender"):
        return _nulls(pl.Series(population.sex[who]), ~has_person, rng, 0.01)
    if name == "ethnicity":
        return _nulls(pl.Series(population.ethnicity[who]), ~has_person, rng, 0.04)
    if role == "date":
        lag = 0 if name == spec.event_date else rng.integers(0, 400, n)
        return _nulls(pl.Series((event_day + lag).astype(np.int32)).cast(pl.Date), None, rng,
                      0.0 if name == spec.event_date else 0.2)
    if role == "flag":
        return pl.Series(rng.random(n) < 0.3)
    if role == "score":
        return pl.Series(np.round(0.5 + 0.5 * rng.beta(5, 1, n), 4))
    if role == "numeric":
        if column.dtype == pl.Float64:
            return _nulls(pl.Series(np.round(rng.lognormal(8, 1.2, n), 2)), None, rng, 0.1)
        if name.endswith("_days"):
            return _nulls(pl.Series(np.round(rng.lognormal(6, 1.0, n)).astype(np.int64)), None, rng, 0.3)
        return _nulls(pl.Series(rng.binomial(60, 0.4, n).astype(np.int64)), None, rng, 0.05)
    return _nulls(pl.Series(_codes(spec, name, n, rng)), None, rng, 0.02)


def _codes(spec: ReleaseTable, name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    staged = next((c for t in SOURCES.get(spec.source, ()).tables if t.name == spec.name
                   for c in t.columns if c.name == name), None) if spec.source in SOURCES else None
    codes = np.array(staged.codes) if staged is not None and staged.codes else np.array(
        [f"{name[:3].upper()}{i:03d}" for i in range(VOCABULARY.get(name, 8))])
    return rng.choice(codes, n, p=_zipf(codes.size))


def _nulls(series: pl.Series, forced: np.ndarray | None, rng: np.random.Generator, share: float) -> pl.Series:
    mask = rng.random(series.len()) < share
    if forced is not None:
        mask |= forced
    return series.set(pl.Series(mask), None) if mask.any() else series


def _xjs_lookup(person_ids: dict[str, np.ndarray], rng: np.random.Generator) -> pl.DataFrame:
    """Per-dataset persons of one simulated person share a cross-justice id, with some links missed
    (more at the stricter thresholds), so the three levels nest and differ."""
    rows = pl.concat([
        pl.DataFrame({"source_dataset": source, "dataset_person_id": ids[ids > 0],
                      "person": np.flatnonzero(ids > 0).astype(np.int64)})
        for source, ids in person_ids.items()
    ])
    n = rows.height
    own = -1 - np.arange(n)  # a missed link leaves a record with an id of its own
    low = pl.Series(np.where(rng.random(n) < 0.03, own, rows["person"].to_numpy())).rank("dense")
    medium = pl.Series(np.where(rng.random(n) < 0.04, own, low.to_numpy())).rank("dense")
    high = pl.Series(np.where(rng.random(n) < 0.06, own, medium.to_numpy())).rank("dense")
    ids = pl.DataFrame({"xjs_person_id_high": high, "xjs_person_id_medium": medium, "xjs_person_id_low": low})
    frame = pl.concat([rows.drop("person"), ids], how="horizontal")
    return frame.cast(release_tables()[XJS_LOOKUP_ID].schema())


def _case_lookup(tables, rng: np.random.Generator) -> pl.DataFrame:
    hocas = tables[("magistrates", "hocas_flatfile")]["defendant_case_id_hash"]
    xhibit = tables[("crown_court", "xhibit_flatfile")]["defendant_on_case_id_hash"]
    n = min(int(0.8 * xhibit.len()), hocas.len())
    spec = release_tables()[CASE_LOOKUP_ID]
    frame = pl.DataFrame({
        "defendant_case_id_hash": hocas.gather(rng.permutation(hocas.len())[:n]),
        "defendant_on_case_id_hash": xhibit.gather(rng.permutation(xhibit.len())[:n]),
        "case_type": rng.choice(np.array(["SENT_FOR_TRIAL", "COMMITTED_FOR_SENTENCE", "APPEAL"]), n, p=[.6, .3, .1]),
        "match_score": np.round(0.5 + 0.5 * rng.beta(8, 1, n), 4),
        "keys_agreed": rng.choice(np.array(["URN,ASN,PNC", "URN,PNC", "ASN,PNC", "PNC,COURT,DATE", "URN",
                                            "PERSON,COURT,DATE"]), n, p=_zipf(6)),
    })
    return frame.cast(spec.schema()).select(spec.column_names)
