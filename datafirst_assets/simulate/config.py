"""Simulator configuration: population shape, journeys and per-system recording errors.

Every rate is a per-record probability. A record's rate for an error is the source's
`ErrorProfile` rate times the product of the subgroup multipliers that apply to the person
(name origin, sex, ethnic group) and to the record (age band at the event), capped at 0.95.

Calibration (criminal systems, per DOMAIN.md, measured on pairs of records of one person):
date of birth exact ~95% (near miss ~3%), forename exact ~93% (small edit ~4%), surname
~93%, full name ~88%, PNC ~98%, postcode differs ~20%. The defaults reproduce those figures;
`datafirst_assets.simulate.calibration.agreement_report` measures them on a simulated run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

ERROR_NAMES = (
    "forename_typo",
    "forename_phonetic",
    "forename_nickname",
    "forename_initial",
    "forename_missing",
    "middle_dropped",
    "middle_promoted",
    "surname_typo",
    "surname_phonetic",
    "surname_missing",
    "surname_stale",
    "double_barrel_partial",
    "name_swap",
    "dob_missing",
    "dob_placeholder",
    "dob_day_month_swap",
    "dob_near_miss",
    "sex_unknown",
    "sex_flip",
    "ethnicity_unknown",
    "ethnicity_misrecorded",
    "postcode_missing",
    "postcode_stale",
    "postcode_ahead",
    "postcode_typo",
    "postcode_unformatted",
    "no_fixed_abode",
    "address_missing",
    "address_abbreviated",
    "pnc_missing",
    "pnc_typo",
    "pnc_junk",
    "pnc_short_format",
    "pnc_alternate",
    "cro_missing",
    "cro_typo",
    "whitespace_noise",
    "diacritics_dropped",
)
#: Rates that describe a system or a person's life rather than a recording error or gap: the
#: hard difficulty leaves them as they are.
NOT_ERRORS = ("pnc_alternate", "diacritics_dropped", "postcode_stale", "postcode_ahead")
DIFFICULTIES = ("standard", "hard")
#: Hard difficulty: identifier error and missing rates times this, names this much more
#: concentrated on the common ones (Zipf exponent).
HARD_ERROR_FACTOR = 2.0
HARD_NAME_CONCENTRATION = 1.4


@dataclass(frozen=True)
class ErrorProfile:
    """How one source system records a person: per-record error rates."""

    # names
    forename_typo: float = 0.014  # keyboard slip: substitution, deletion, doubling, transposition
    forename_phonetic: float = 0.005  # Katherine for Catherine, Muhammad for Mohammed
    forename_nickname: float = 0.009  # Bill for William (people flagged as "goes by" x5)
    forename_initial: float = 0.0  # forename reduced to its initial
    forename_missing: float = 0.002
    middle_dropped: float = 0.12  # middle names not recorded (when the person has any)
    middle_promoted: float = 0.004  # middle name recorded as the forename (and vice versa)
    surname_typo: float = 0.014
    surname_phonetic: float = 0.006
    surname_missing: float = 0.002
    surname_stale: float = 0.20  # old surname used after a change (e.g. maiden name)
    double_barrel_partial: float = 0.25  # one half of a double-barrelled surname
    name_swap: float = 0.003  # forename and surname swapped
    # date of birth
    dob_missing: float = 0.004
    dob_placeholder: float = 0.003  # day and month set to 01/01, year kept
    dob_day_month_swap: float = 0.003
    dob_near_miss: float = 0.015  # +-1 day / month / year, digit slip
    # sex and ethnicity
    sex_unknown: float = 0.004  # "U", "Unknown", "N", "0" or blank
    sex_flip: float = 0.001
    ethnicity_unknown: float = 0.08  # "NS", "Z_Dummy", "ZZ", "99" or blank
    ethnicity_misrecorded: float = 0.03  # another code of the same group
    # address
    postcode_missing: float = 0.05
    postcode_stale: float = 0.05  # the person's previous address
    postcode_ahead: float = 0.01  # the person's next address (record updated later)
    postcode_typo: float = 0.008
    postcode_unformatted: float = 0.04  # no space / lower case
    no_fixed_abode: float = 0.0  # postcode blank, address "NFA"
    address_missing: float = 0.05
    address_abbreviated: float = 0.10  # "Rd" for "Road"
    # criminal identifiers
    pnc_missing: float = 0.05
    pnc_typo: float = 0.004  # a digit slip (check letter recomputed: entry systems validate it)
    pnc_junk: float = 0.003  # one of the shared placeholder PNCs
    pnc_short_format: float = 0.02  # YY/NNNNNNNA
    pnc_alternate: float = 0.5  # for people with two PNCs: share of records using the second
    cro_missing: float = 0.35
    cro_typo: float = 0.003
    # presentation
    name_case: str = "upper"  # upper | title | mixed
    whitespace_noise: float = 0.002  # leading/trailing/double spaces in names
    diacritics_dropped: float = 0.5  # accents dropped (Zoë recorded as Zoe): systems storing ASCII only


def _profiles() -> dict[str, ErrorProfile]:
    base = ErrorProfile()
    return {
        "magistrates": dataclasses.replace(
            base,
            pnc_missing=0.25,
            no_fixed_abode=0.02,
            postcode_missing=0.04,
            cro_missing=0.45,
            ethnicity_unknown=0.15,
            diacritics_dropped=0.9,  # Libra stores plain ASCII
        ),
        "crown_court": dataclasses.replace(
            base,
            name_case="title",
            pnc_missing=0.08,
            forename_typo=0.012,
            surname_typo=0.012,
            postcode_missing=0.05,
            cro_missing=0.3,
            ethnicity_unknown=0.10,
            diacritics_dropped=0.6,
        ),
        "prison": dataclasses.replace(
            base,
            pnc_missing=0.03,
            dob_near_miss=0.011,
            forename_nickname=0.01,
            middle_dropped=0.08,
            ethnicity_unknown=0.04,
            cro_missing=0.15,
            diacritics_dropped=0.7,
        ),
        "probation": dataclasses.replace(
            base,
            name_case="title",
            pnc_missing=0.06,
            postcode_missing=0.04,
            postcode_stale=0.08,
            ethnicity_unknown=0.05,
            cro_missing=0.3,
            diacritics_dropped=0.3,
        ),
        "oasys": dataclasses.replace(
            base, pnc_missing=0.12, middle_dropped=0.2, ethnicity_unknown=0.06, cro_missing=0.4,
            diacritics_dropped=0.4,
        ),
        "family": dataclasses.replace(
            base,
            name_case="mixed",
            forename_typo=0.02,
            forename_phonetic=0.01,
            forename_nickname=0.02,
            forename_initial=0.01,
            forename_missing=0.01,
            middle_dropped=0.3,
            surname_typo=0.02,
            surname_phonetic=0.01,
            surname_missing=0.008,
            surname_stale=0.25,
            name_swap=0.004,
            dob_missing=0.12,
            dob_placeholder=0.01,
            dob_day_month_swap=0.005,
            dob_near_miss=0.02,
            sex_unknown=0.03,
            ethnicity_unknown=0.4,
            postcode_missing=0.12,
            postcode_stale=0.1,
            postcode_typo=0.015,
            address_missing=0.12,
            pnc_missing=1.0,
            cro_missing=1.0,
            whitespace_noise=0.005,
            diacritics_dropped=0.25,
        ),
        "civil": dataclasses.replace(
            base,
            name_case="mixed",
            forename_typo=0.02,
            forename_phonetic=0.01,
            forename_nickname=0.03,
            forename_initial=0.07,
            forename_missing=0.04,
            middle_dropped=1.0,
            surname_typo=0.018,
            surname_phonetic=0.01,
            surname_missing=0.004,
            surname_stale=0.3,
            name_swap=0.004,
            dob_missing=0.55,
            dob_placeholder=0.01,
            dob_near_miss=0.02,
            postcode_missing=0.03,
            postcode_stale=0.12,
            postcode_typo=0.012,
            address_missing=0.03,
            address_abbreviated=0.2,
            pnc_missing=1.0,
            cro_missing=1.0,
            whitespace_noise=0.005,
            diacritics_dropped=0.25,
        ),
    }


def _multipliers() -> dict[str, dict[str, dict[str, float]]]:
    return {
        # transliteration and name-order conventions
        "name_origin": {
            "south_asian_muslim": {
                "forename_phonetic": 3.0,
                "surname_phonetic": 3.0,
                "name_swap": 3.0,
                "middle_promoted": 4.0,
                "forename_typo": 1.2,
            },
            "south_asian_indic": {
                "forename_phonetic": 2.0,
                "surname_phonetic": 2.0,
                "name_swap": 2.0,
                "forename_typo": 1.3,
                "surname_typo": 1.3,
            },
            "west_african": {
                "forename_typo": 1.8,
                "surname_typo": 1.8,
                "forename_phonetic": 2.0,
                "surname_phonetic": 2.0,
                "name_swap": 3.0,
                "dob_placeholder": 2.0,
            },
            "somali_arabic": {
                "forename_phonetic": 4.0,
                "surname_phonetic": 4.0,
                "name_swap": 4.0,
                "dob_placeholder": 5.0,
                "forename_typo": 1.3,
                "surname_typo": 1.3,
            },
            "east_european": {
                "forename_typo": 1.5,
                "surname_typo": 2.5,
                "forename_phonetic": 2.5,
                "surname_phonetic": 3.0,
                "name_swap": 2.0,
            },
            "east_asian": {"name_swap": 6.0, "forename_phonetic": 2.0, "surname_phonetic": 2.0},
        },
        # young people: fewer identifiers captured
        "age_band": {
            "under_18": {
                "dob_missing": 1.5,
                "postcode_missing": 2.0,
                "pnc_missing": 2.5,
                "ethnicity_unknown": 1.5,
                "forename_nickname": 1.5,
            },
            "18_24": {"postcode_missing": 1.5, "pnc_missing": 1.3, "postcode_stale": 1.3},
            "65_plus": {"dob_day_month_swap": 1.5},
        },
        "sex": {"F": {"surname_stale": 1.2}},
        "ethnic_group": {},
    }


def _coverage() -> dict[str, tuple[str, str | None]]:
    return {
        "magistrates": ("2011-01-01", None),
        "crown_court": ("2013-01-01", None),
        "prison": ("2011-01-01", None),
        "probation": ("2014-01-01", None),
        "family": ("2011-01-01", None),
        "civil": ("2012-01-01", "2022-12-31"),
        "oasys": ("2011-01-01", "2023-12-31"),
    }


@dataclass(frozen=True)
class SimulationConfig:
    """Knobs of the simulated world. Defaults are calibrated to DOMAIN.md."""

    # ---- population (N counts people and companies) ----
    company_share: float = 0.01  # companies (civil parties only)
    criminal_share: float = 0.74  # of individuals: people with criminal cases
    family_share: float = 0.13  # of individuals: family-court-only people (the rest: civil only)
    family_applicant_criminal_overlap: float = 0.06  # family applicant slots filled by offenders
    family_respondent_criminal_overlap: float = 0.30  # family respondent slots filled by offenders
    family_second_adult_rate: float = 0.9  # units with a second adult
    civil_criminal_overlap: float = 0.30  # offenders added to civil parties, relative to civil-only
    civil_family_overlap: float = 0.10  # family people added to civil parties, relative to civil-only
    criminal_female_share: float = 0.15
    surname_change_rate_female: float = 0.08  # marriage etc. within the simulated window
    surname_change_rate_male: float = 0.005
    nickname_affinity_rate: float = 0.10  # people who go by a nickname (x5 nickname rate)
    pnc_duplicate_rate: float = 0.006  # people with two PNC ids
    offender_sibling_rate: float = 0.06  # offenders with a sibling offender (surname, home; some twins)
    twin_rate: float = 0.01  # family children who are twins (same DOB and surname)
    # >1: name frequencies raised to this power and renormalised, so more people share the
    # common names (what makes clusters chain at scale)
    name_concentration: float = 1.0

    # ---- criminal journeys ----
    mag_cases_zipf: float = 2.3  # records per offender ~ Zipf(a), most 1, some many
    mag_cases_max: int = 60
    mean_days_between_cases: float = 280.0
    codefendant_rate: float = 0.10  # a defendant joined to the previous case (same case_id)
    sent_to_crown_scale: float = 1.0  # multiplies per-offence-group send rates
    appeal_rate: float = 0.02  # convicted after not-guilty plea -> Crown Court appeal
    remand_rate: float = 0.25  # sent-for-trial defendants remanded in custody
    licence_recall_rate: float = 0.18
    hdc_rate: float = 0.15
    prison_number_reissue_rate: float = 0.06  # new prison number on a later custodial journey
    crn_duplicate_rate: float = 0.02  # offenders with a second CRN
    offender_pk_duplicate_rate: float = 0.02  # offenders with a second OASys offender_pk
    # errors in the case-link keys carried by Crown Court records
    crown_urn_typo: float = 0.03
    crown_urn_missing: float = 0.02
    crown_asn_missing: float = 0.15
    crown_asn_typo: float = 0.01
    crown_committal_date_shift: float = 0.08  # off by 1-7 days
    crown_committal_date_missing: float = 0.03
    crown_court_code_error: float = 0.02  # another originating court, or blank

    # ---- family and civil ----
    family_cases_zipf: float = 2.2
    civil_cases_zipf: float = 2.6
    company_as_individual_rate: float = 0.04  # company party recorded as INDIVIDUAL, name in surname
    company_concentration: float = 1.1  # claims per company ~ 1 / (rank + 5) ** this

    # ---- coverage of each system: (first, last) ISO dates, None = open ----
    coverage: dict[str, tuple[str, str | None]] = field(default_factory=_coverage)

    # ---- recording errors ----
    errors: dict[str, ErrorProfile] = field(default_factory=_profiles)
    # dimension -> group -> error name -> multiplier
    subgroup_multipliers: dict[str, dict[str, dict[str, float]]] = field(default_factory=_multipliers)

    @classmethod
    def for_difficulty(cls, difficulty: str = "standard") -> SimulationConfig:
        """``standard``: the calibrated defaults. ``hard``: every identifier error and missing
        rate doubled (capped at 0.95; rates already above stay), and common names shared by
        more people."""
        if difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty must be one of {DIFFICULTIES}, not {difficulty!r}")
        base = cls()
        if difficulty == "standard":
            return base

        def harder(prof: ErrorProfile) -> ErrorProfile:
            return dataclasses.replace(prof, **{
                name: max(getattr(prof, name), min(0.95, HARD_ERROR_FACTOR * getattr(prof, name)))
                for name in ERROR_NAMES if name not in NOT_ERRORS})

        return dataclasses.replace(base, errors={k: harder(v) for k, v in base.errors.items()},
                                   name_concentration=HARD_NAME_CONCENTRATION)

    def profile(self, source: str) -> ErrorProfile:
        return self.errors.get(source, ErrorProfile())

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["coverage"] = {k: list(v) for k, v in self.coverage.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimulationConfig:
        d = dict(d)
        if "errors" in d:
            d["errors"] = {k: ErrorProfile(**v) if isinstance(v, dict) else v for k, v in d["errors"].items()}
        if "coverage" in d:
            d["coverage"] = {k: (v[0], v[1]) for k, v in d["coverage"].items()}
        return cls(**d)

    def validate(self) -> None:
        for source, prof in self.errors.items():
            for name in ERROR_NAMES:
                v = getattr(prof, name)
                if not 0.0 <= v <= 1.0:
                    raise ValueError(f"errors[{source!r}].{name} = {v} is not a probability")
            if prof.name_case not in ("upper", "title", "mixed"):
                raise ValueError(f"errors[{source!r}].name_case must be upper, title or mixed")
        for dim, groups in self.subgroup_multipliers.items():
            for group, mults in groups.items():
                for name, m in mults.items():
                    if name not in ERROR_NAMES or m < 0:
                        raise ValueError(f"bad multiplier {dim}/{group}/{name} = {m}")
        if not 0 <= self.company_share < 0.5 or not 0 < self.criminal_share <= 1:
            raise ValueError("company_share / criminal_share out of range")
        if self.name_concentration <= 0:
            raise ValueError("name_concentration must be positive")
        if self.criminal_share + self.family_share > 1:
            raise ValueError("criminal_share + family_share must be <= 1")
        from datafirst_assets.sources.registry import SOURCES

        missing = [k for k in SOURCES if k not in self.coverage]
        if missing:
            raise ValueError(f"coverage has no dates for {missing}")
