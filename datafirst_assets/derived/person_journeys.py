"""`derived/person_journeys`: one row per cross-justice person, built only from release tables.

    journeys = person_journeys(release)                 # release: (source, table) -> frame
    journeys = person_journeys(release, as_of=date(2024, 3, 31))
    journeys, state, computed = journeys_by_person(release, state=stored)   # the same table, recomputing
                                                                            # only the persons whose rows changed

`release` holds de-identified or synthetic release tables (the same columns either way); the
function never sees raw or staged data. Tables it reads are listed in `PERSON_JOURNEYS.inputs`.

Definitions (the catalogue repeats them per column):

person
    A cross-justice person at the medium match threshold: a distinct `xjs_person_id_medium` of
    `linking.xjs_lookup`. A dataset's row belongs to the person whose lookup row has
    `source_dataset` = the dataset and `dataset_person_id` = the row's per-dataset person id
    (`estimated_defendant_id`, `estimated_offender_id` or `estimated_party_id`). Rows whose
    person is not in the lookup belong to nobody (`unlinked_rows` counts them).
contact
    A person row of any of the seven datasets, dated by its event: magistrates' first hearing,
    Crown Court receipt, prison reception, probation referral, OASys assessment, and the
    issue date of the family or civil case a party belongs to.
criminal case
    A magistrates' defendant-case (`hocas_flatfile` row, starting at its first hearing) or a
    Crown Court defendant-on-case (`xhibit_flatfile` row, starting at its receipt). A Crown
    Court case that `linking.case_lookup` links to a magistrates' case of the same person is
    that case's Crown Court stage, not a new case. The person's first criminal case is the
    one starting first (the index case).
first offence date
    The earliest of the offence dates on the person's magistrates' offences
    (`hocas_all_offence`) and the start of the index case (the Crown Court records no offence
    date, so a Crown Court-only person's first offence date is their first receipt).
returned within 1 / 2 years
    True when another criminal case of the person starts 1 to 365 (730) days after the index
    case starts; False when none does; null when the person has no dated criminal case or the
    window has not ended by the as-of date (index start + 365 (730) days > as-of), whatever
    happened in it, so that rates are taken over complete windows only. Prison receptions,
    probation events and assessments are consequences of a case, not a return, so they do
    not count; nor does a case starting on the index case's own day (charged together).
ages
    Dates of birth are withheld from the release, so ages come from the `age_at_*` columns:
    the age at a date is the age recorded on the person's dated record nearest to it, less the
    whole years (365.25 days) between the two dates. Exact when a record is on that date (the
    first contact always is, if it records an age); otherwise it may be one year out.
days in custody
    Days from reception to release over the person's custodial journeys, counting each day
    once where journeys overlap; a journey with no release date is open and counts to the
    as-of date, and days after the as-of date are not counted.
as-of date
    The date journeys are observed to: given, or else the latest contact date in the release.
    It bounds open custody and the repeat windows; counts and contact dates cover the whole
    release, so an as-of date before the release's last contact is for what-if views only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
from datafirst_assets.common.pandera_polars import pa
import polars as pl

from datafirst_assets.derived.spec import DerivedColumn, DerivedTable, non_negative
from datafirst_assets.sources.registry import ETHNIC_GROUP
from datafirst_assets.warehouse.content import code_version

LINKING = "linking"
LOOKUP = (LINKING, "xjs_lookup")
CASE_LOOKUP = (LINKING, "case_lookup")
PERSON = "xjs_person_id_medium"
DAYS_PER_YEAR = 365.25
REPEAT_WINDOWS = {"1y": 365, "2y": 730}


@dataclass(frozen=True)
class ContactTable:
    """Where a dataset's person rows are, and which released columns date and describe them."""

    dataset: str
    table: str
    person: str
    date: str                    # event date (on the row, or on the parent case: `via`)
    age: str
    sex: str | None = None
    ethnicity: str | None = None
    via: tuple[str, str] | None = None  # (parent table, shared key) holding `date`


# Order = tie-break when two contacts fall on the same day (the criminal courts first).
CONTACTS = (
    ContactTable("magistrates", "hocas_flatfile", "estimated_defendant_id", "first_hearing_date",
                 "age_at_first_hearing", "sex", "ethnicity"),
    ContactTable("crown_court", "xhibit_flatfile", "estimated_defendant_id", "receipt_date", "age_at_receipt",
                 "gender", "ethnicity"),
    ContactTable("prison", "nomis_flatfile", "estimated_offender_id", "reception_date", "age_at_reception",
                 "sex", "ethnicity"),
    ContactTable("probation", "delius_flatfile", "estimated_offender_id", "referral_date", "age_at_referral",
                 "gender", "ethnicity"),
    ContactTable("oasys", "assessments_metadata", "estimated_offender_id", "assessment_date", "age_at_assessment",
                 "gender", "ethnicity"),
    ContactTable("family", "family_people", "estimated_party_id", "issue_date", "age_at_issue", "sex", "ethnicity",
                 via=("family_cases", "case_id_hash")),
    ContactTable("civil", "parties", "estimated_party_id", "issue_date", "age_at_issue",
                 via=("cases", "case_id_hash")),
)
CONTACT = {c.dataset: c for c in CONTACTS}
DATASET_RANK = {c.dataset: i for i, c in enumerate(CONTACTS)}
ETHNIC_GROUPS = tuple(ETHNIC_GROUP.values())


def _ethnic_group(code: pl.Expr) -> pl.Expr:
    return code.str.slice(0, 1).replace_strict(ETHNIC_GROUP, default=None, return_dtype=pl.String)


# Every release column the table is built from (the asset loads only these): nothing else is read.
COLUMNS_READ: dict[tuple[str, str], tuple[str, ...]] = {
    LOOKUP: ("source_dataset", "dataset_person_id", PERSON),
    CASE_LOOKUP: ("defendant_case_id_hash", "defendant_on_case_id_hash"),
    ("magistrates", "hocas_flatfile"): ("defendant_case_id_hash", "estimated_defendant_id", "first_hearing_date",
                                        "age_at_first_hearing", "sex", "ethnicity"),
    ("magistrates", "hocas_all_offence"): ("defendant_case_id_hash", "offence_date"),
    ("crown_court", "xhibit_flatfile"): ("defendant_on_case_id_hash", "estimated_defendant_id", "receipt_date",
                                         "age_at_receipt", "gender", "ethnicity"),
    ("prison", "nomis_flatfile"): ("estimated_offender_id", "reception_date", "release_date", "age_at_reception",
                                   "sex", "ethnicity"),
    ("probation", "delius_flatfile"): ("event_id_hash", "estimated_offender_id", "referral_date", "age_at_referral",
                                       "gender", "ethnicity"),
    ("probation", "delius_rqmnt"): ("event_id_hash",),
    ("oasys", "assessments_metadata"): ("assessment_id_hash", "estimated_offender_id", "assessment_date",
                                        "age_at_assessment", "gender", "ethnicity"),
    ("oasys", "oasys_assessments_details_core_risk"): ("assessment_id_hash", "ogrs3_score"),
    ("family", "family_people"): ("estimated_party_id", "case_id_hash", "age_at_issue", "sex", "ethnicity"),
    ("family", "family_cases"): ("case_id_hash", "issue_date"),
    ("civil", "parties"): ("estimated_party_id", "case_id_hash", "age_at_issue"),
    ("civil", "cases"): ("case_id_hash", "issue_date"),
}
_count = non_negative
PERSON_JOURNEYS = DerivedTable(
    name="person_journeys",
    grain="one row per cross-justice person (medium match threshold)",
    description=(
        "Each person's journey through the justice system, combined across all seven datasets through "
        "the cross-justice lookup: when they were first and last seen, their criminal cases, custody, "
        "probation, OASys risk scores, family and civil court involvement, and whether they came back "
        "with a new criminal case within one and two years of their first. Built only from the release "
        "(de-identified or synthetic); definitions in `datafirst_assets/derived/person_journeys.py`."
    ),
    columns=(
        DerivedColumn(PERSON, pl.Int64, "xjs_key",
                      "Cross-justice person id at the medium match threshold (`linking.xjs_lookup`)",
                      nullable=False, checks=(pa.Check.ge(1),)),
        DerivedColumn("datasets", pl.Int32, "numeric", "Number of datasets the person is recorded in (1 to 7)",
                      nullable=False, checks=(pa.Check.in_range(1, len(CONTACTS)),)),
        DerivedColumn("first_contact_date", pl.Date, "date",
                      "Date of the person's first contact with any dataset (first hearing, Crown Court receipt, "
                      "prison reception, probation referral, OASys assessment, family or civil case issue)"),
        DerivedColumn("last_contact_date", pl.Date, "date", "Date of the person's last contact with any dataset"),
        DerivedColumn("first_contact_dataset", pl.String, "categorical",
                      "Dataset of the first contact (same-day ties: magistrates, crown_court, prison, probation, "
                      "oasys, family, civil)",
                      checks=(pa.Check.isin([c.dataset for c in CONTACTS]),)),
        DerivedColumn("age_at_first_contact", pl.Int32, "age",
                      "Age in whole years at the first contact (from the released ages; dates of birth are withheld)",
                      checks=(pa.Check.in_range(0, 120),)),
        DerivedColumn("sex", pl.String, "categorical",
                      "Sex (M / F): the value most often recorded across datasets, ties to the first recorded",
                      checks=(pa.Check.isin(["M", "F"]),)),
        DerivedColumn("ethnicity", pl.String, "categorical",
                      "Self-defined ethnicity (2001 census 16+1 code): most often recorded, ties to the first"),
        DerivedColumn("ethnic_group", pl.String, "categorical",
                      "Ethnic group of `ethnicity` (White, Mixed, Asian, Black, Other)",
                      checks=(pa.Check.isin(list(ETHNIC_GROUPS)),)),
        DerivedColumn("magistrates_cases", pl.Int64, "numeric", "Magistrates' defendant-cases (hocas_flatfile rows)",
                      nullable=False, checks=_count()),
        DerivedColumn("crown_court_cases", pl.Int64, "numeric",
                      "Crown Court defendant-on-cases (xhibit_flatfile rows)", nullable=False, checks=_count()),
        DerivedColumn("criminal_cases", pl.Int64, "numeric",
                      "Distinct criminal cases: magistrates' cases plus Crown Court cases not linked (case_lookup) "
                      "to one of the person's magistrates' cases", nullable=False, checks=_count()),
        DerivedColumn("first_criminal_case_date", pl.Date, "date",
                      "Start of the first criminal case (index case): its first hearing, or Crown Court receipt"),
        DerivedColumn("first_offence_date", pl.Date, "date",
                      "Earliest offence date on the person's magistrates' offences, or the index case start if "
                      "earlier (the Crown Court records no offence date)"),
        DerivedColumn("age_at_first_offence", pl.Int32, "age",
                      "Age in whole years at the first offence date (estimated from the age recorded on the "
                      "nearest dated record; may be one year out)", checks=(pa.Check.in_range(0, 120),)),
        DerivedColumn("custodial_journeys", pl.Int64, "numeric", "Custodial journeys (nomis_flatfile rows)",
                      nullable=False, checks=_count()),
        DerivedColumn("days_in_custody", pl.Int64, "numeric",
                      "Days in custody, reception to release, each day counted once; open journeys count to "
                      "the as-of date", nullable=False, checks=_count()),
        DerivedColumn("in_custody_on_as_of", pl.Boolean, "flag",
                      "In custody on the as-of date (a journey received by then and not yet released)",
                      nullable=False),
        DerivedColumn("probation_events", pl.Int64, "numeric",
                      "Probation events: orders, licences, post-sentence supervision (delius_flatfile rows)",
                      nullable=False, checks=_count()),
        DerivedColumn("probation_requirements", pl.Int64, "numeric",
                      "Requirements of the person's community and suspended sentence orders (delius_rqmnt rows)",
                      nullable=False, checks=_count()),
        DerivedColumn("oasys_assessments", pl.Int64, "numeric", "OASys assessments (assessments_metadata rows)",
                      nullable=False, checks=_count()),
        DerivedColumn("first_ogrs3_score", pl.Int64, "numeric",
                      "OGRS3 score (0-100) of the earliest dated assessment that has one",
                      checks=(pa.Check.in_range(0, 100),)),
        DerivedColumn("latest_ogrs3_score", pl.Int64, "numeric",
                      "OGRS3 score (0-100) of the latest dated assessment that has one",
                      checks=(pa.Check.in_range(0, 100),)),
        DerivedColumn("family_court", pl.Boolean, "flag", "A party to at least one family court case",
                      nullable=False),
        DerivedColumn("civil_court", pl.Boolean, "flag", "A party to at least one civil case", nullable=False),
        DerivedColumn("returned_within_1y", pl.Boolean, "flag",
                      "A new criminal case started 1-365 days after the index case; null if no criminal case or "
                      "the year had not ended by the as-of date"),
        DerivedColumn("returned_within_2y", pl.Boolean, "flag",
                      "A new criminal case started 1-730 days after the index case; null if no criminal case or "
                      "the two years had not ended by the as-of date"),
        DerivedColumn("as_of_date", pl.Date, "date", "Date the journeys are observed to (open custody, windows)",
                      nullable=False),
    ),
    unique_key=(PERSON,),
    row_rules=(
        ("contact_order", "first_contact_date <= last_contact_date",
         pl.col("first_contact_date") <= pl.col("last_contact_date")),
        ("case_counts", "magistrates_cases <= criminal_cases <= magistrates_cases + crown_court_cases",
         pl.col("criminal_cases").is_between(pl.col("magistrates_cases"),
                                             pl.col("magistrates_cases") + pl.col("crown_court_cases"))),
        ("offence_before_case", "first_offence_date <= first_criminal_case_date",
         pl.col("first_offence_date") <= pl.col("first_criminal_case_date")),
        ("no_case_no_return", "returned flags are null without a criminal case",
         (pl.col("criminal_cases") > 0) | (pl.col("returned_within_1y").is_null()
                                           & pl.col("returned_within_2y").is_null())),
        ("return_needs_two_cases", "a return needs a second criminal case",
         ~(pl.col("returned_within_1y") | pl.col("returned_within_2y")) | (pl.col("criminal_cases") >= 2)),
        ("one_year_inside_two", "returned within 1 year implies within 2 years (when known)",
         ~pl.col("returned_within_1y") | pl.col("returned_within_2y")),
        ("custody_needs_journey", "days in custody only with a custodial journey",
         (pl.col("days_in_custody") == 0) | (pl.col("custodial_journeys") > 0)),
    ),
    inputs=tuple(COLUMNS_READ),
)


def person_journeys(release: Mapping[tuple[str, str], pl.DataFrame], *, as_of: dt.date | None = None) -> pl.DataFrame:
    """One row per cross-justice person (see the module docstring for every definition)."""
    release = restricted_release(release)
    lookup = _lookup(release[LOOKUP])
    contacts = _contacts(release, lookup)
    as_of = as_of or latest_contact(contacts)
    return finish_journeys(journey_base(release, lookup, contacts), release, lookup, as_of)


def restricted_release(release: Mapping[tuple[str, str], pl.DataFrame]) -> dict[tuple[str, str], pl.DataFrame]:
    """The release tables the journeys read, only the columns they read (raises when one is missing)."""
    missing = [f"{s}.{t}" for s, t in PERSON_JOURNEYS.inputs if (s, t) not in release]
    if missing:
        raise KeyError(f"person_journeys needs release tables {missing}")
    return {key: release[key].select(columns) for key, columns in COLUMNS_READ.items()}


def latest_contact(contacts: pl.DataFrame) -> dt.date:
    """The default as-of date: the latest contact date (today when no contact is dated)."""
    latest = contacts["date"].max()
    return latest if latest is not None else dt.date.today()


def journey_base(release, lookup: pl.DataFrame, contacts: pl.DataFrame) -> pl.DataFrame:
    """Per person, every column that does not depend on the as-of date (`finish_journeys` adds those),
    with the repeat flags before the as-of date masks them (`_returned_<window>`): a person's row here
    is made from that person's rows alone (`journeys_by_person` keeps it while they are unchanged)."""
    persons = lookup.group_by(PERSON).agg(pl.col("source_dataset").n_unique().cast(pl.Int32).alias("datasets"))
    cases = _criminal_cases(release, lookup)
    parts = [
        _contact_summary(contacts),
        _demographic(contacts, "sex"),
        _demographic(contacts, "ethnicity"),
        _case_summary(release, lookup, cases, contacts),
        _probation(release, lookup),
        _oasys(release, lookup),
        _involved(release, lookup, CONTACT["family"], "family_court"),
        _involved(release, lookup, CONTACT["civil"], "civil_court"),
    ]
    frame = persons
    for part in parts:
        frame = frame.join(part, on=PERSON, how="left")
    return frame


def finish_journeys(base: pl.DataFrame, release, lookup: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """The table from `journey_base`: custody to the as-of date, repeat windows ended by it, counts
    without a row 0, in the table's columns and order."""
    frame = base.join(_custody(release, lookup, as_of), on=PERSON, how="left")
    counts = [c.name for c in PERSON_JOURNEYS.columns if c.role == "numeric" and not c.nullable]
    frame = frame.with_columns(
        *(pl.col(c).fill_null(0) for c in counts if c != "datasets"),
        pl.col("family_court", "civil_court", "in_custody_on_as_of").fill_null(False),
        _ethnic_group(pl.col("ethnicity")).alias("ethnic_group"),
        pl.lit(as_of, dtype=pl.Date).alias("as_of_date"),
        # a window counts only once it has ended by the as-of date
        *(pl.when(pl.col("first_criminal_case_date") + pl.duration(days=days) <= pl.lit(as_of, dtype=pl.Date))
          .then(pl.col(f"_returned_{w}")).alias(f"returned_within_{w}") for w, days in REPEAT_WINDOWS.items()),
    )
    return PERSON_JOURNEYS.select_columns(frame).sort(PERSON)


def unlinked_rows(release: Mapping[tuple[str, str], pl.DataFrame]) -> dict[str, int]:
    """Per dataset: person rows whose per-dataset person id is not in the lookup (they join nobody).

    Rows without a person id (companies among civil parties) are not persons and not counted.
    """
    lookup = _lookup(release[LOOKUP])
    out = {}
    for c in CONTACTS:
        rows = release[(c.dataset, c.table)].filter(pl.col(c.person).is_not_null())
        ids = lookup.filter(pl.col("source_dataset") == c.dataset).select(pl.col("dataset_person_id").alias(c.person))
        out[c.dataset] = rows.join(ids, on=c.person, how="anti").height
    return out


# --- pieces -----------------------------------------------------------------------------------------


def _lookup(lookup: pl.DataFrame) -> pl.DataFrame:
    # The release guarantees one row per per-dataset person; deduplicate anyway so a bad lookup
    # cannot multiply rows in the joins below.
    return (lookup.select("source_dataset", "dataset_person_id", PERSON)
            .drop_nulls().unique(subset=["source_dataset", "dataset_person_id"], keep="first", maintain_order=True))


def _link(rows: pl.DataFrame, dataset: str, person: str, lookup: pl.DataFrame) -> pl.DataFrame:
    """Rows of one dataset with their cross-justice person (rows without one are dropped)."""
    ids = lookup.filter(pl.col("source_dataset") == dataset).select(
        pl.col("dataset_person_id").alias(person), PERSON)
    return rows.join(ids, on=person, how="inner")


def _contact_rows(release, contact, lookup: pl.DataFrame) -> pl.DataFrame:
    """One contact table's rows with their date (from the parent table when dated there) and person."""
    rows = release[(contact.dataset, contact.table)]
    if contact.via:
        parent, key = contact.via
        dates = release[(contact.dataset, parent)].select(key, contact.date).unique(subset=[key], keep="first")
        rows = rows.join(dates, on=key, how="left")
    return _link(rows, contact.dataset, contact.person, lookup)


def _contacts(release, lookup: pl.DataFrame) -> pl.DataFrame:
    """Every person row of every dataset: person, dataset, date, age, sex, ethnicity."""
    frames = []
    for c in CONTACTS:
        rows = _contact_rows(release, c, lookup)
        frames.append(rows.select(
            PERSON,
            pl.lit(c.dataset).alias("dataset"),
            pl.lit(DATASET_RANK[c.dataset], dtype=pl.Int32).alias("rank"),
            pl.col(c.date).cast(pl.Date).alias("date"),
            pl.col(c.age).cast(pl.Int32).alias("age"),
            # Staging codes sex as M / F; anything else (a synthetic oddity) counts as not recorded.
            (pl.col(c.sex) if c.sex else pl.lit(None)).cast(pl.String).replace_strict(
                {"M": "M", "F": "F"}, default=None, return_dtype=pl.String).alias("sex"),
            (pl.col(c.ethnicity) if c.ethnicity else pl.lit(None)).cast(pl.String).alias("ethnicity"),
        ))
    return pl.concat(frames, how="vertical")


def _first_per_person(frame: pl.DataFrame, by: list[str], descending: bool | list[bool] = False) -> pl.DataFrame:
    """Each person's first row in the order `by` (nulls last), rows still tied then ordered by their
    other columns: lo-fi synthetic rows tie often (one person, one date, two ages), and a tie left to
    the rows' order made one table give two results depending on how it was stored."""
    order = descending if isinstance(descending, list) else [descending] * len(by)
    rest = [c for c in frame.columns if c != PERSON and c not in by]
    return frame.group_by(PERSON).agg(
        pl.all().sort_by([*by, *rest], descending=[*order, *[False] * len(rest)], nulls_last=True).first())


def _age_at(contacts: pl.DataFrame, targets: pl.DataFrame, target: str, name: str) -> pl.DataFrame:
    """Age at each person's `target` date, from the dated record with an age nearest to it.

    Age at the target = recorded age - whole years from the target to the record's date.
    """
    aged = contacts.filter(pl.col("date").is_not_null() & pl.col("age").is_not_null()).select(
        PERSON, "date", "age", "rank")
    joined = aged.join(targets.select(PERSON, target).drop_nulls(), on=PERSON, how="inner").with_columns(
        (pl.col("date") - pl.col(target)).dt.total_days().alias("_days"))
    nearest = _first_per_person(joined.with_columns(pl.col("_days").abs().alias("_distance")),
                                ["_distance", "date", "rank"])
    years = (pl.col("_days").abs() / DAYS_PER_YEAR).floor().cast(pl.Int32) * pl.col("_days").sign().cast(pl.Int32)
    age = pl.col("age") - years
    return nearest.select(PERSON, pl.when(age.is_between(0, 120)).then(age).cast(pl.Int32).alias(name))


def _contact_summary(contacts: pl.DataFrame) -> pl.DataFrame:
    dated = contacts.filter(pl.col("date").is_not_null())
    span = dated.group_by(PERSON).agg(pl.col("date").min().alias("first_contact_date"),
                                      pl.col("date").max().alias("last_contact_date"))
    first = _first_per_person(dated, ["date", "rank"]).select(PERSON, pl.col("dataset").alias("first_contact_dataset"))
    age = _age_at(contacts, span, "first_contact_date", "age_at_first_contact")
    return span.join(first, on=PERSON, how="left").join(age, on=PERSON, how="left")


def _demographic(contacts: pl.DataFrame, column: str) -> pl.DataFrame:
    """Most frequent recorded value; ties go to the value recorded first (date, then dataset order)."""
    counted = contacts.filter(pl.col(column).is_not_null()).group_by(PERSON, column).agg(
        pl.len().alias("_n"), pl.col("date").min().alias("_first"), pl.col("rank").min().alias("_rank"))
    return _first_per_person(counted, ["_n", "_first", "_rank", column], [True, False, False, False]).select(
        PERSON, column)


def _criminal_cases(release, lookup: pl.DataFrame) -> pl.DataFrame:
    """One row per criminal case: person, case key, start date, court (Crown Court stages folded in)."""
    mags = _link(release[("magistrates", "hocas_flatfile")], "magistrates", "estimated_defendant_id", lookup).select(
        PERSON, pl.col("defendant_case_id_hash").alias("case"), pl.col("first_hearing_date").alias("start"),
        pl.lit(0, dtype=pl.Int32).alias("rank"))
    crown = _link(release[("crown_court", "xhibit_flatfile")], "crown_court", "estimated_defendant_id", lookup).select(
        PERSON, pl.col("defendant_on_case_id_hash").alias("case"), pl.col("receipt_date").alias("start"),
        pl.lit(1, dtype=pl.Int32).alias("rank"))
    links = release[CASE_LOOKUP].select(pl.col("defendant_on_case_id_hash").alias("case"),
                                        pl.col("defendant_case_id_hash").alias("_mags_case")).drop_nulls()
    mags_owner = mags.select(pl.col("case").alias("_mags_case"), pl.col(PERSON).alias("_mags_person")).unique(
        subset=["_mags_case"], keep="first")
    # Several lookup rows may point at one Crown Court case; it is a stage of a magistrates' case
    # of the same person if any of them does.
    staged = (crown.select(PERSON, "case").join(links, on="case", how="inner")
              .join(mags_owner, on="_mags_case", how="inner")
              .filter(pl.col(PERSON) == pl.col("_mags_person")).select(PERSON, "case").unique())
    crown_own = crown.join(staged, on=[PERSON, "case"], how="anti")
    return pl.concat([mags, crown_own], how="vertical").with_columns(pl.col("start").cast(pl.Date))


def _case_summary(release, lookup: pl.DataFrame, cases: pl.DataFrame, contacts: pl.DataFrame) -> pl.DataFrame:
    counts = [
        _link(release[(d, t)], d, "estimated_defendant_id", lookup).group_by(PERSON).agg(pl.len().alias(name))
        for d, t, name in (("magistrates", "hocas_flatfile", "magistrates_cases"),
                           ("crown_court", "xhibit_flatfile", "crown_court_cases"))
    ]
    n_cases = cases.group_by(PERSON).agg(pl.len().alias("criminal_cases"))

    index = cases.filter(pl.col("start").is_not_null()).group_by(PERSON).agg(
        pl.col("start").min().alias("first_criminal_case_date"))
    later = cases.join(index, on=PERSON, how="inner").with_columns(
        (pl.col("start") - pl.col("first_criminal_case_date")).dt.total_days().alias("_after"))
    returns = later.group_by(PERSON).agg(
        *((pl.col("_after").is_between(1, days)).any().alias(f"_returned_{w}") for w, days in REPEAT_WINDOWS.items()))
    # before the as-of date masks windows that have not ended (`finish_journeys`)
    returned = index.join(returns, on=PERSON, how="left").select(
        PERSON, "first_criminal_case_date", *(f"_returned_{w}" for w in REPEAT_WINDOWS))

    mags = _link(release[("magistrates", "hocas_flatfile")], "magistrates", "estimated_defendant_id", lookup)
    offences = release[("magistrates", "hocas_all_offence")].select("defendant_case_id_hash", "offence_date").join(
        mags.select("defendant_case_id_hash", PERSON), on="defendant_case_id_hash", how="inner")
    earliest_offence = offences.group_by(PERSON).agg(pl.col("offence_date").min().alias("_offence"))
    first_offence = returned.join(earliest_offence, on=PERSON, how="left").select(
        PERSON, pl.min_horizontal("_offence", "first_criminal_case_date").alias("first_offence_date"))
    age = _age_at(contacts, first_offence, "first_offence_date", "age_at_first_offence")
    return (counts[0].join(counts[1], on=PERSON, how="full", coalesce=True)
            .join(n_cases, on=PERSON, how="full", coalesce=True)
            .join(returned, on=PERSON, how="left").join(first_offence, on=PERSON, how="left")
            .join(age, on=PERSON, how="left"))


def _custody(release, lookup: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    journeys = _link(release[("prison", "nomis_flatfile")], "prison", "estimated_offender_id", lookup)
    end_of_window = pl.lit(as_of, dtype=pl.Date)
    spans = journeys.filter(pl.col("reception_date").is_not_null() & (pl.col("reception_date") <= end_of_window)).select(
        PERSON, pl.col("reception_date").alias("start"),
        pl.min_horizontal(pl.col("release_date").fill_null(end_of_window), end_of_window).alias("end"),
        (pl.col("release_date").is_null() | (pl.col("release_date") > end_of_window)).alias("open"),
    ).with_columns(pl.max_horizontal("start", "end").alias("end"))  # a release before reception counts 0 days
    # Merge overlapping journeys so each day counts once: a new block starts where a journey
    # begins after every earlier journey of the person has ended.
    merged = spans.sort(PERSON, "start").with_columns(
        pl.col("end").cum_max().shift(1).over(PERSON).alias("_reach")
    ).with_columns(
        (pl.col("_reach").is_null() | (pl.col("start") > pl.col("_reach"))).cum_sum().over(PERSON).alias("_block")
    ).group_by(PERSON, "_block").agg(pl.col("start").min(), pl.col("end").max())
    days = merged.group_by(PERSON).agg((pl.col("end") - pl.col("start")).dt.total_days().sum().alias("days_in_custody"))
    return (journeys.group_by(PERSON).agg(pl.len().alias("custodial_journeys"))
            .join(days, on=PERSON, how="left")
            .join(spans.group_by(PERSON).agg(pl.col("open").any().alias("in_custody_on_as_of")), on=PERSON, how="left"))


def _probation(release, lookup: pl.DataFrame) -> pl.DataFrame:
    events = _link(release[("probation", "delius_flatfile")], "probation", "estimated_offender_id", lookup)
    requirements = release[("probation", "delius_rqmnt")].select("event_id_hash").join(
        events.select("event_id_hash", PERSON), on="event_id_hash", how="inner")
    return (events.group_by(PERSON).agg(pl.len().alias("probation_events"))
            .join(requirements.group_by(PERSON).agg(pl.len().alias("probation_requirements")), on=PERSON, how="left"))


def _oasys(release, lookup: pl.DataFrame) -> pl.DataFrame:
    assessments = _link(release[("oasys", "assessments_metadata")], "oasys", "estimated_offender_id", lookup)
    scored = release[("oasys", "oasys_assessments_details_core_risk")].select("assessment_id_hash", "ogrs3_score").join(
        assessments.select("assessment_id_hash", "assessment_date", PERSON), on="assessment_id_hash", how="inner",
    ).filter(pl.col("ogrs3_score").is_not_null() & pl.col("assessment_date").is_not_null())
    order = ["assessment_date", "assessment_id_hash"]
    first = _first_per_person(scored, order).select(PERSON, pl.col("ogrs3_score").alias("first_ogrs3_score"))
    latest = _first_per_person(scored, order, True).select(PERSON, pl.col("ogrs3_score").alias("latest_ogrs3_score"))
    return (assessments.group_by(PERSON).agg(pl.len().alias("oasys_assessments"))
            .join(first, on=PERSON, how="left").join(latest, on=PERSON, how="left"))


def _involved(release, lookup: pl.DataFrame, contact: ContactTable, flag: str) -> pl.DataFrame:
    rows = _link(release[(contact.dataset, contact.table)], contact.dataset, contact.person, lookup)
    return rows.select(PERSON).unique().with_columns(pl.lit(True).alias(flag))


# --- by person: a new extract recomputes only the persons whose rows changed -------------------------
#
#     frame, state, recomputed = journeys_by_person(release, as_of=None, state=stored_state)
#     frame, state, recomputed = journeys_from(conn, selects, whole, as_of=None, state=stored_state)
#
# `person_journeys` rebuilt every person's row from the whole release on every run, although a 1%
# extract changes the rows of a few percent of persons. A person's row is made from that person's rows
# alone, except for what depends on the as-of date (open custody, repeat windows, the date itself).
# So the state kept between runs (`save_state`) is, per person, the finished row of the table, the
# repeat flags before the as-of date masked them (`_returned_<window>`) and a digest of the rows it
# was made from: the number of rows and two sums of their hashes (DuckDB's `hash` of each row with
# its table's seed; the state's key records the code and DuckDB's version).
#
# A run digests every person's rows in DuckDB, where the release is stored (linking each row to its
# person, as the journeys do; no release row is read into Python), and:
#   - the as-of date (latest linked contact, or the configured one) is the state's, and the release's
#     keys are unique (`_ambiguous_keys`: then no row's order matters): the rows of the persons whose
#     digest differs (or who are new) are read, those persons' rows computed and finished, and every
#     other person keeps the stored row as it was: work in proportion to the change;
#   - the as-of date moved (a new extract's later contacts): as above, but every row is finished again
#     to the new date, from the kept rows and every person's prison journeys (custody);
#   - no state, another key, a full run, or most persons changed: every person is computed.
# The table is the one the full computation gives in every case.
#
# What "a person's rows" are, per table: the lookup rows of the person; each dataset's person rows
# of the person's per-dataset ids (family and civil parties with their case's issue date); the
# magistrates' offences of the person's cases; the case lookup rows of the person's Crown Court cases;
# the requirements of the person's probation events; the OGRS3 scores of the person's assessments.
# That is all `journey_base` reads for a person, given unique row keys in the release (the release
# and synthetic contracts require them, and the subset path checks): a Crown Court case is a stage
# of a magistrates' case only when that case is the same person's, which the person's own
# magistrates' rows decide.

DIGEST = ("_digest_rows", "_digest_hi", "_digest_lo")
LATEST = "_latest_contact"  # beside the digest in `digest_sql`, not stored
PRISON = ("prison", "nomis_flatfile")
RETURNED = tuple(f"_returned_{w}" for w in REPEAT_WINDOWS)
# (child table, the key it shares with its parent, parent table): a person's rows reached through a
# parent row of the person (an offence through the person's magistrates' case, ...)
CHILDREN = (
    (("magistrates", "hocas_all_offence"), "defendant_case_id_hash", ("magistrates", "hocas_flatfile")),
    (CASE_LOOKUP, "defendant_on_case_id_hash", ("crown_court", "xhibit_flatfile")),
    (("probation", "delius_rqmnt"), "event_id_hash", ("probation", "delius_flatfile")),
    (("oasys", "oasys_assessments_details_core_risk"), "assessment_id_hash", ("oasys", "assessments_metadata")),
)
# Keys whose duplicates would make a result depend on the rows' order (a `keep="first"` above)
UNIQUE_KEYS = (
    (LOOKUP, ("source_dataset", "dataset_person_id")),
    (("magistrates", "hocas_flatfile"), ("defendant_case_id_hash",)),
    (("family", "family_cases"), ("case_id_hash",)),
    (("civil", "cases"), ("case_id_hash",)),
)


def state_key() -> str:
    """What a stored state's rows depend on besides the release: the code and DuckDB's row hash."""
    return hashlib.sha256(f"{code_version()}|{duckdb.__version__}".encode()).hexdigest()[:16]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lookup_sql(selects: Mapping[tuple[str, str], str]) -> str:
    return (f"select source_dataset, dataset_person_id, {PERSON} from ({selects[LOOKUP]}) _l where "
            f"source_dataset is not null and dataset_person_id is not null and {PERSON} is not null")


def _person_rows_sql(selects: Mapping[tuple[str, str], str]) -> dict[tuple[str, str], str]:
    """SQL of every table's rows that some person's row is made from, each with its person (`PERSON`)."""
    lookup = _lookup_sql(selects)
    rows = {LOOKUP: lookup}
    for c in CONTACTS:
        table = f"({selects[(c.dataset, c.table)]})"
        if c.via:
            parent, key = c.via
            table = (f"(select _r.*, _p.{_q(c.date)} from {table} _r left join (select {_q(key)}, {_q(c.date)} "
                     f"from ({selects[(c.dataset, parent)]}) _pp) _p on _r.{_q(key)} = _p.{_q(key)})")
        rows[(c.dataset, c.table)] = (
            f"select _r.*, _k.{PERSON} from {table} _r join ({lookup}) _k "
            f"on _k.source_dataset = '{c.dataset}' and _k.dataset_person_id = _r.{_q(c.person)}")
    for child, key, parent in CHILDREN:
        rows[child] = (f"select _c.*, _o.{PERSON} from ({selects[child]}) _c join (select distinct {_q(key)}, "
                       f"{PERSON} from ({rows[parent]}) _pp) _o on _c.{_q(key)} = _o.{_q(key)}")
    return rows


def digest_sql(selects: Mapping[tuple[str, str], str]) -> str:
    """Per person: how many rows their row is made from and two sums of those rows' hashes; and the
    person's latest contact date (`LATEST`: not part of the digest; taken in the same pass over the
    contact rows, which a second query joined to the lookup again only to find the latest one)."""
    dates = {(c.dataset, c.table): c.date for c in CONTACTS}

    def latest(key: tuple[str, str]) -> str:
        return f"_x.{_q(dates[key])}::date" if key in dates else "null::date"

    hashed = " union all ".join(f"select {PERSON}, hash(_x, {seed}) as _h, {latest(key)} as _dt from ({sql}) _x"
                                for seed, (key, sql) in enumerate(sorted(_person_rows_sql(selects).items()), start=1))
    return (f"select {PERSON}, count(*)::bigint as {DIGEST[0]}, sum(_h >> 32)::ubigint as {DIGEST[1]}, "
            f"sum(_h & 4294967295)::ubigint as {DIGEST[2]}, max(_dt) as {LATEST} from ({hashed}) _d group by {PERSON}")


def _ambiguous_keys(conn, selects: Mapping[tuple[str, str], str]) -> int:
    """How many keys of `UNIQUE_KEYS` are duplicated."""
    sources = {**selects, LOOKUP: _lookup_sql(selects)}
    dupes = " + ".join(f"(select count(*) from (select {', '.join(map(_q, k))} from ({sources[t]}) _u "
                       f"group by all having count(*) > 1) _v)" for t, k in UNIQUE_KEYS)
    return int(conn.execute(f"select {dupes}").fetchall()[0][0])


def _fetch(conn, sql: str) -> pl.DataFrame:
    return pl.from_arrow(conn.sql(sql).to_arrow_table())  # type: ignore[return-value]


def rows_of_sql(conn, selects: Mapping[tuple[str, str], str], persons: pl.Series) -> dict[tuple[str, str], pl.DataFrame]:
    """The release restricted to the rows of `persons` (read from DuckDB: only those rows): given
    unique keys (`UNIQUE_KEYS`), `journey_base` of it gives those persons' rows of the whole."""
    views: list[str] = []

    def register(frame: pl.DataFrame) -> str:
        views.append(f"__journeys_{secrets.token_hex(4)}")
        conn.register(views[-1], frame.to_arrow())
        return views[-1]

    try:
        changed = register(pl.DataFrame({PERSON: persons}))
        out = {LOOKUP: _fetch(conn, f"select * from ({_lookup_sql(selects)}) _l where {PERSON} in "
                                    f"(select {PERSON} from {changed})")}
        lookup = register(out[LOOKUP])
        sub: dict[tuple[str, str], str] = {}
        for c in CONTACTS:
            key = (c.dataset, c.table)
            out[key] = _fetch(conn, f"select * from ({selects[key]}) _t where {_q(c.person)} in (select "
                                    f"dataset_person_id from {lookup} where source_dataset = '{c.dataset}')")
            sub[key] = register(out[key])
            if c.via:
                parent, on = c.via
                out[(c.dataset, parent)] = _fetch(conn, f"select * from ({selects[(c.dataset, parent)]}) _t "
                                                        f"where {_q(on)} in (select {_q(on)} from {sub[key]})")
        for child, on, parent in CHILDREN:
            out[child] = _fetch(conn, f"select * from ({selects[child]}) _t where {_q(on)} in "
                                      f"(select {_q(on)} from {sub[parent]})")
        return out
    finally:
        for view in views:
            conn.unregister(view)


def _custody_rows(conn, selects: Mapping[tuple[str, str], str]) -> tuple[dict[tuple[str, str], pl.DataFrame], pl.DataFrame]:
    """All `finish_journeys` reads besides the base: every prison journey, and the lookup's prison rows."""
    lookup = _fetch(conn, f"select * from ({_lookup_sql(selects)}) _l where source_dataset = 'prison'")
    return {PRISON: _fetch(conn, selects[PRISON])}, _lookup(lookup)


def journeys_by_person(release: Mapping[tuple[str, str], pl.DataFrame], *, as_of: dt.date | None = None,
                       state: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """`journeys_from` over release frames (registered in an in-memory DuckDB)."""
    release = restricted_release(release)
    conn = duckdb.connect()
    try:
        selects = {}
        for i, (key, frame) in enumerate(release.items()):
            conn.register(f"_t{i}", frame.to_arrow())
            selects[key] = f"select * from _t{i}"
        return journeys_from(conn, selects, lambda: release, as_of=as_of, state=state)
    finally:
        conn.close()


def journeys_from(conn, selects: Mapping[tuple[str, str], str], whole, *, as_of: dt.date | None = None,
                  state: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """The journeys (`person_journeys`' table), the state to store for the next run, and how many
    persons were computed (the others kept their row of `state`). `selects`: a SELECT of each table
    of `COLUMNS_READ` (its columns) on `conn`; `whole()`: those tables as frames, read only when
    every row must be finished or computed again."""
    ambiguous = _ambiguous_keys(conn, selects)
    digests = _fetch(conn, digest_sql(selects))
    # the latest linked contact date: the latest of the persons' (every contact row is a person's)
    latest, digests = digests[LATEST].max(), digests.drop(LATEST)
    as_of = as_of or latest or dt.date.today()
    usable = state is not None and set((*RETURNED, *DIGEST)) <= set(state.columns)
    kept = state.join(digests, on=[PERSON, *DIGEST], how="semi") if usable else None  # type: ignore[union-attr]
    if kept is None or kept.height < digests.height // 2:  # most persons changed (a synthetic table drawn again)
        release = restricted_release(whole())
        lookup = _lookup(release[LOOKUP])
        base = journey_base(release, lookup, _contacts(release, lookup))
        frame, returned, computed = finish_journeys(base, release, lookup, as_of), base.select(PERSON, *RETURNED), base.height
    else:
        changed = digests.join(kept, on=PERSON, how="anti")[PERSON]
        same_date = kept.height == 0 or kept["as_of_date"][0] == as_of
        if ambiguous:  # a result would depend on the rows' order: the whole release, filtered in order
            release = restricted_release(whole())
            subset = rows_of(release, _lookup(release[LOOKUP]), changed)
        else:  # only the changed persons' rows are read
            subset = rows_of_sql(conn, selects, changed)
        sub_lookup = _lookup(subset[LOOKUP])
        fresh = journey_base(subset, sub_lookup, _contacts(subset, sub_lookup))
        returned = pl.concat([kept.select(PERSON, *RETURNED).cast(fresh.select(PERSON, *RETURNED).schema),
                              fresh.select(PERSON, *RETURNED)])
        computed = fresh.height
        if same_date:
            finished = finish_journeys(fresh, subset, sub_lookup, as_of)
            frame = pl.concat([kept.select(finished.columns).cast(finished.schema), finished]).sort(PERSON)
        else:  # the date moved (a new extract's later contacts): every row finished again, which reads
            # besides the kept base only every person's prison journeys (custody to the new date)
            base = pl.concat([kept.select(fresh.columns).cast(fresh.schema), fresh], how="vertical")
            custody, lookup = (release, _lookup(release[LOOKUP])) if ambiguous else _custody_rows(conn, selects)
            frame = finish_journeys(base, custody, lookup, as_of)
    new_state = frame.join(returned, on=PERSON, how="left").join(digests, on=PERSON, how="left")
    return frame, new_state, computed


def rows_of(release, lookup: pl.DataFrame, persons: pl.Series) -> dict[tuple[str, str], pl.DataFrame]:
    """The release restricted to the rows of `persons` (and the lookup, deduplicated as a whole
    first, restricted likewise): `journey_base` of it gives those persons' rows of the whole."""
    lookup = lookup.filter(pl.col(PERSON).is_in(persons.implode()))
    out = dict(release)
    out[LOOKUP] = lookup
    for c in CONTACTS:
        ids = lookup.filter(pl.col("source_dataset") == c.dataset)["dataset_person_id"]
        table = release[(c.dataset, c.table)].filter(pl.col(c.person).is_in(ids.implode()))
        out[(c.dataset, c.table)] = table
        if c.via:
            parent, key = c.via
            out[(c.dataset, parent)] = release[(c.dataset, parent)].filter(pl.col(key).is_in(table[key].implode()))
    for child, key, parent in CHILDREN:
        out[child] = release[child].filter(pl.col(key).is_in(out[parent][key].implode()))
    return out


def unlinked_counts(conn, selects: Mapping[tuple[str, str], str]) -> dict[str, int]:
    """`unlinked_rows` counted in DuckDB, where the release is stored."""
    relation = conn.sql(_unlinked_sql(selects))
    return dict(zip(relation.columns, map(int, relation.fetchall()[0])))


def _unlinked_sql(selects: Mapping[tuple[str, str], str]) -> str:
    lookup = _lookup_sql(selects)
    return "select " + ", ".join(
        f"(select count(*) from ({selects[(c.dataset, c.table)]}) _t where {_q(c.person)} is not null and "
        f"{_q(c.person)} not in (select dataset_person_id from ({lookup}) _k where source_dataset = '{c.dataset}'))"
        f" as {_q(c.dataset)}" for c in CONTACTS)


def journeys_change(frame: pl.DataFrame, new_state: pl.DataFrame,
                    state: pl.DataFrame | None) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame] | None:
    """The table `frame` as a change to the table stored with `state` (the persons gone, the rows of
    the persons whose digest changed, the new persons' rows), or None when every row may differ (no
    state, or the as-of date moved). A person with the state's digest and as-of date has the row
    stored: it was computed from the same rows and finished to the same date. None too when most
    rows changed."""
    if state is None or not set((PERSON, "as_of_date", *DIGEST)) <= set(state.columns) or (
            frame.height and state.height and state["as_of_date"][0] != frame["as_of_date"][0]):
        return None
    before = state.select(PERSON)
    changed = new_state.join(state, on=[PERSON, *DIGEST], how="anti").select(PERSON)
    rows = frame.join(changed, on=PERSON, how="semi")
    deletes = before.join(frame.select(PERSON), on=PERSON, how="anti")
    if rows.height + deletes.height > frame.height // 2:
        return None  # most rows changed (a synthetic table drawn again): a rewrite is cheaper
    return deletes, rows.join(before, on=PERSON, how="semi"), rows.join(before, on=PERSON, how="anti")


def state_path(folder: Path, variant: str) -> Path:
    return folder / f"{variant}.{state_key()}.parquet"


def load_state(folder: Path, variant: str) -> pl.DataFrame | None:
    """The stored state of this code (None: none, or made by other code)."""
    path = state_path(folder, variant)
    try:
        return pl.read_parquet(path) if path.exists() else None
    except (OSError, pl.exceptions.PolarsError):
        return None  # unreadable: every person is computed and the state written again


def save_state(folder: Path, variant: str, state: pl.DataFrame) -> None:
    """Written whole (a reader sees the old state or the new one), then any other code's removed."""
    folder.mkdir(parents=True, exist_ok=True)
    path = state_path(folder, variant)
    tmp = path.with_suffix(".tmp")
    state.write_parquet(tmp)
    tmp.replace(path)
    for stale in folder.glob(f"{variant}.*.parquet"):
        if stale != path:
            stale.unlink(missing_ok=True)
