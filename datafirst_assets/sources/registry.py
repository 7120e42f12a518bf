"""The seven source systems and the tables each delivers.

Raw extracts carry the personal identifiers used for linking; the research tables built
later drop or hash them. Column names and codings differ by system on purpose: that is
what each system's standardisation has to undo.
"""

from __future__ import annotations

from datafirst_assets.sources.spec import ColumnSpec as C
from datafirst_assets.sources.spec import SourceSpec, TableSpec

ETHNICITY_CODES = (
    "W1", "W2", "W9", "M1", "M2", "M3", "M9", "A1", "A2", "A3", "A9", "B1", "B2", "B9", "O1", "O9",
)
ETHNIC_GROUP = {"W": "White", "M": "Mixed", "A": "Asian", "B": "Black", "O": "Other"}
# Codes that mean "not known" in source systems (incl. the junk Z_Dummy seen in real data).
ETHNICITY_UNKNOWN = ("NS", "Z_Dummy", "ZZ", "99")

OFFENCE_GROUPS = (
    "VIOLENCE", "SEXUAL", "ROBBERY", "THEFT", "CRIMINAL_DAMAGE", "DRUGS", "WEAPONS",
    "PUBLIC_ORDER", "FRAUD", "MOTORING", "SUMMARY_OTHER", "MISC",
)
PLEAS = ("GUILTY", "NOT_GUILTY", "NO_PLEA")
RISK_LEVELS = ("LOW", "MEDIUM", "HIGH", "VERY_HIGH")


def _offence_cols() -> tuple[C, ...]:
    return (
        C("offence_code", "text", description="Home Office offence code"),
        C("offence_group", "code", codes=OFFENCE_GROUPS, description="Offence group"),
    )


MAGISTRATES = SourceSpec(
    key="magistrates",
    system="Libra",
    description="Magistrates' courts case management (Libra): defendants per case and offences.",
    date_format="%d/%m/%Y",
    sex_codes={"M": "M", "F": "F"},
    person_id_name="estimated_defendant_id",
    tables=(
        TableSpec(
            name="hocas_flatfile",
            grain="defendant per case (most serious offence)",
            event_date="first_hearing_date",
            person_fields={
                "forename": ("forename1",), "middle_names": ("forename2", "forename3"),
                "surname": ("surname",), "dob": ("dob",), "sex": ("sex",),
                "postcode": ("postcode",), "address": ("address_line1",),
                "pnc": ("pnc_id",), "cro": ("cro_number",),
            },
            columns=(
                C("defendant_case_id", "id", description="Libra defendant-on-case id"),
                C("case_id", "text", required=True, description="Libra case id"),
                C("defendant_id", "text", description="Libra defendant id (per case, unreliable)"),
                C("forename1", "name"), C("forename2", "name"), C("forename3", "name"),
                C("surname", "name"), C("dob", "dob"), C("sex", "sex"),
                C("ethnicity", "ethnicity"), C("postcode", "postcode"),
                C("address_line1", "text"), C("pnc_id", "pnc"), C("cro_number", "cro"),
                C("asn", "text", description="Arrest summons number"),
                C("urn", "text", description="Police case reference (URN)"),
                C("court_code", "text", required=True, description="Magistrates' court code"),
                C("first_hearing_date", "date", required=True),
                *_offence_cols(),
                C("plea", "code", codes=PLEAS),
                C("outcome", "code", codes=(
                    "CONVICTED", "ACQUITTED", "WITHDRAWN", "DISMISSED", "SENT_TO_CROWN",
                    "COMMITTED_FOR_SENTENCE", "ADJOURNED")),
                C("committed_to_crown", "flag"),
                C("committal_date", "date"),
                C("sentence_date", "date"),
            ),
        ),
        TableSpec(
            name="hocas_all_offence",
            grain="offence per defendant per case",
            parent="hocas_flatfile",
            event_date="offence_date",
            columns=(
                C("offence_id", "id"),
                C("defendant_case_id", "ref", required=True),
                *_offence_cols(),
                C("offence_date", "date"),
                C("plea", "code", codes=PLEAS),
                C("verdict", "code", codes=("GUILTY", "NOT_GUILTY", "NONE")),
                C("disposal", "code", codes=(
                    "FINE", "DISCHARGE", "COMMUNITY_ORDER", "SUSPENDED_SENTENCE", "CUSTODY",
                    "SENT_TO_CROWN", "NONE")),
            ),
        ),
    ),
)

CROWN_COURT = SourceSpec(
    key="crown_court",
    system="Xhibit",
    description="Crown Court case management (Xhibit): defendants on cases, offences and disposals.",
    date_format="%Y-%m-%d",
    sex_codes={"Male": "M", "Female": "F"},
    person_id_name="estimated_defendant_id",
    tables=(
        TableSpec(
            name="xhibit_flatfile",
            grain="defendant per case (most serious disposal)",
            event_date="receipt_date",
            person_fields={
                "forename": ("forename",), "middle_names": ("middle_names",),
                "surname": ("surname",), "dob": ("date_of_birth",), "sex": ("gender",),
                "postcode": ("postcode",), "pnc": ("pnc_id",), "cro": ("cro_number",),
            },
            columns=(
                C("defendant_on_case_id", "id", description="Xhibit defendant-on-case id"),
                C("case_number", "text", required=True, description="Crown Court case number"),
                C("forename", "name"), C("middle_names", "name"), C("surname", "name"),
                C("date_of_birth", "dob"), C("gender", "sex"), C("ethnicity", "ethnicity"),
                C("postcode", "postcode"), C("pnc_id", "pnc"), C("cro_number", "cro"),
                C("asn", "text"), C("urn", "text"),
                C("originating_court_code", "text", description="Sending magistrates' court"),
                C("committal_date", "date"),
                C("receipt_date", "date", required=True),
                C("case_type", "code", codes=("SENT_FOR_TRIAL", "COMMITTED_FOR_SENTENCE", "APPEAL")),
                *_offence_cols(),
                C("disposal_date", "date"),
                C("most_serious_disposal", "code", codes=(
                    "CUSTODY", "SUSPENDED_SENTENCE", "COMMUNITY_ORDER", "FINE", "DISCHARGE",
                    "ACQUITTED", "OTHER")),
                C("custodial_length_days", "int", min_value=0),
            ),
        ),
        TableSpec(
            name="xhibit_all_off_disp",
            grain="offence and disposal per defendant per case",
            parent="xhibit_flatfile",
            event_date="disposal_date",
            columns=(
                C("offence_disposal_id", "id"),
                C("defendant_on_case_id", "ref", required=True),
                *_offence_cols(),
                C("plea", "code", codes=PLEAS),
                C("verdict", "code", codes=("GUILTY", "NOT_GUILTY", "NONE")),
                C("disposal_code", "code", codes=(
                    "CUSTODY", "SUSPENDED_SENTENCE", "COMMUNITY_ORDER", "FINE", "DISCHARGE",
                    "ACQUITTED", "OTHER")),
                C("disposal_date", "date"),
                C("sentence_length_days", "int", min_value=0),
            ),
        ),
    ),
)

PRISON = SourceSpec(
    key="prison",
    system="P-NOMIS",
    description="Prison management (P-NOMIS): custodial journeys, movements, safety incidents.",
    date_format="%Y%m%d",
    sex_codes={"M": "M", "F": "F"},
    person_id_name="estimated_offender_id",
    tables=(
        TableSpec(
            name="nomis_flatfile",
            grain="prisoner per custodial journey",
            event_date="reception_date",
            person_fields={
                "forename": ("first_name",), "middle_names": ("second_name",),
                "surname": ("surname",), "dob": ("birth_date",), "sex": ("sex",),
                "pnc": ("pnc_id",), "cro": ("cro_number",),
            },
            columns=(
                C("custodial_journey_id", "id"),
                C("prison_number", "text", required=True, description="NOMS number, e.g. A1234BC"),
                C("booking_number", "text"),
                C("first_name", "name"), C("second_name", "name"), C("surname", "name"),
                C("birth_date", "dob"), C("sex", "sex"), C("ethnicity", "ethnicity"),
                C("pnc_id", "pnc"), C("cro_number", "cro"),
                C("reception_date", "date", required=True),
                C("release_date", "date"),
                C("release_reason", "code", codes=(
                    "CONDITIONAL_RELEASE", "END_OF_SENTENCE", "HDC", "REMAND_ENDED", "DECEASED",
                    "TRANSFER_ABROAD")),
                C("establishment_code", "text"),
                C("sentence_type", "code", codes=("REMAND", "DETERMINATE", "INDETERMINATE", "RECALL")),
                C("sentence_length_days", "int", min_value=0),
                *_offence_cols(),
            ),
        ),
        TableSpec(
            name="nomis_movements",
            grain="movement in, out of or between prisons",
            parent="nomis_flatfile",
            event_date="movement_date",
            columns=(
                C("movement_id", "id"),
                C("custodial_journey_id", "ref", required=True),
                C("movement_date", "date", required=True),
                C("movement_type", "code", codes=("ADM", "REL", "TRN", "TAP", "CRT")),
                C("from_establishment", "text"),
                C("to_establishment", "text"),
                C("reason", "text"),
            ),
        ),
        TableSpec(
            name="nomis_safety_in_custody",
            grain="safety incident (assault or self-harm)",
            parent="nomis_flatfile",
            event_date="incident_date",
            columns=(
                C("incident_id", "id"),
                C("custodial_journey_id", "ref", required=True),
                C("incident_date", "date", required=True),
                C("incident_type", "code", codes=("ASSAULT", "SELF_HARM")),
                C("role", "code", codes=("PERPETRATOR", "VICTIM", "SELF")),
                C("severity", "code", codes=("MINOR", "SERIOUS")),
            ),
        ),
    ),
)

PROBATION = SourceSpec(
    key="probation",
    system="nDelius",
    description="Probation case management (nDelius): events, requirements, licences, reports.",
    date_format="%Y-%m-%d",
    sex_codes={"M": "M", "F": "F"},
    person_id_name="estimated_offender_id",
    tables=(
        TableSpec(
            name="delius_flatfile",
            grain="offender event (order, licence or post-sentence supervision)",
            event_date="referral_date",
            person_fields={
                "forename": ("forename",), "middle_names": ("second_forename",),
                "surname": ("surname",), "dob": ("date_of_birth",), "sex": ("gender",),
                "postcode": ("postcode",), "pnc": ("pnc_id",), "cro": ("cro_number",),
            },
            columns=(
                C("event_id", "id"),
                C("crn", "text", required=True, description="Case reference number, e.g. X123456"),
                C("forename", "name"), C("second_forename", "name"), C("surname", "name"),
                C("date_of_birth", "dob"), C("gender", "sex"), C("ethnicity", "ethnicity"),
                C("postcode", "postcode"), C("pnc_id", "pnc"), C("cro_number", "cro"),
                C("referral_date", "date", required=True),
                C("event_type", "code", codes=("COMMUNITY_ORDER", "SUSPENDED_SENTENCE", "LICENCE", "PSS")),
                C("sentence_date", "date"),
                C("termination_date", "date"),
                C("termination_reason", "code", codes=(
                    "COMPLETED", "REVOKED", "BREACH", "RECALL", "EXPIRED", "DECEASED")),
                *_offence_cols(),
                C("provider_code", "text"),
            ),
        ),
        TableSpec(
            name="delius_rqmnt",
            grain="requirement of a community or suspended sentence order",
            parent="delius_flatfile",
            event_date="start_date",
            columns=(
                C("requirement_id", "id"),
                C("event_id", "ref", required=True),
                C("requirement_type", "code", codes=(
                    "UNPAID_WORK", "REHABILITATION_ACTIVITY", "CURFEW", "DRUG_REHABILITATION",
                    "ALCOHOL_TREATMENT", "PROGRAMME", "MENTAL_HEALTH")),
                C("start_date", "date", required=True),
                C("end_date", "date"),
                C("length", "int", min_value=0),
                C("termination_reason", "code", codes=("COMPLETED", "REVOKED", "BREACH", "EXPIRED")),
            ),
        ),
        TableSpec(
            name="delius_lic_condition",
            grain="licence condition",
            parent="delius_flatfile",
            event_date="start_date",
            columns=(
                C("lic_condition_id", "id"),
                C("event_id", "ref", required=True),
                C("condition_type", "code", codes=(
                    "RESIDENCE", "NON_CONTACT", "EXCLUSION_ZONE", "CURFEW", "DRUG_TESTING",
                    "ELECTRONIC_MONITORING")),
                C("start_date", "date", required=True),
                C("end_date", "date"),
            ),
        ),
        TableSpec(
            name="delius_psr",
            grain="pre-sentence court report",
            parent="delius_flatfile",
            event_date="requested_date",
            columns=(
                C("psr_id", "id"),
                C("event_id", "ref", required=True),
                C("report_type", "code", codes=("FAST_DELIVERY", "STANDARD", "ORAL")),
                C("requested_date", "date", required=True),
                C("completed_date", "date"),
                C("proposal", "code", codes=("CUSTODY", "SUSPENDED_SENTENCE", "COMMUNITY_ORDER", "OTHER")),
            ),
        ),
        TableSpec(
            name="delius_pss",
            grain="post-sentence supervision requirement",
            parent="delius_flatfile",
            event_date="start_date",
            columns=(
                C("pss_id", "id"),
                C("event_id", "ref", required=True),
                C("requirement_type", "code", codes=("DRUG_APPOINTMENT", "DRUG_TESTING", "SUPERVISION")),
                C("start_date", "date", required=True),
                C("end_date", "date"),
            ),
        ),
    ),
)

FAMILY = SourceSpec(
    key="family",
    system="FamilyMan",
    description="Family court case management (FamilyMan): cases and the people party to them.",
    date_format="%d/%m/%Y",
    sex_codes={"1": "M", "2": "F"},
    person_id_name="estimated_party_id",
    tables=(
        TableSpec(
            name="family_cases",
            grain="family court case",
            event_date="issue_date",
            columns=(
                C("case_id", "id"),
                C("case_number", "text", required=True),
                C("court_code", "text"),
                C("case_type", "code", codes=(
                    "PUBLIC_LAW", "PRIVATE_LAW", "DIVORCE", "ADOPTION", "DOMESTIC_VIOLENCE")),
                C("issue_date", "date", required=True),
                C("disposal_date", "date"),
                C("outcome", "code", codes=("ORDER_MADE", "WITHDRAWN", "DISMISSED", "ONGOING")),
            ),
        ),
        TableSpec(
            name="family_people",
            grain="party per family case",
            parent="family_cases",
            person_fields={
                "forename": ("forename",), "middle_names": ("middle_name",),
                "surname": ("surname",), "dob": ("dob",), "sex": ("sex",),
                "postcode": ("postcode",), "address": ("address_line1",),
            },
            case_fields={"case_id": "case_id", "party_role": "role"},
            columns=(
                C("party_id", "id"),
                C("case_id", "ref", required=True),
                C("role", "code", codes=("APPLICANT", "RESPONDENT", "CHILD", "OTHER")),
                C("forename", "name"), C("middle_name", "name"), C("surname", "name"),
                C("dob", "dob"), C("sex", "sex"), C("ethnicity", "ethnicity"),
                C("postcode", "postcode"), C("address_line1", "text"),
            ),
        ),
    ),
)

CIVIL = SourceSpec(
    key="civil",
    system="CaseMan + PCOL",
    description="County court civil cases (CaseMan) and possession claims online (PCOL), "
    "one table per kind of record with a `system` column.",
    date_format="%d/%m/%Y",
    sex_codes={"M": "M", "F": "F"},
    person_id_name="estimated_party_id",
    tables=(
        TableSpec(
            name="cases",
            grain="civil case (CaseMan) or possession claim (PCOL)",
            event_date="issue_date",
            columns=(
                C("case_id", "id"),
                C("system", "code", required=True, codes=("CASEMAN", "PCOL")),
                C("case_number", "text", required=True),
                C("court_code", "text"),
                C("claim_type", "code", codes=(
                    "MONEY", "POSSESSION_RENT", "POSSESSION_MORTGAGE", "PERSONAL_INJURY", "OTHER")),
                C("issue_date", "date", required=True),
                C("claim_amount", "float", min_value=0),
                C("status", "code", codes=("OPEN", "JUDGMENT", "SETTLED", "STRUCK_OUT", "WITHDRAWN")),
            ),
        ),
        TableSpec(
            name="case_events",
            grain="event on a civil case or claim",
            parent="cases",
            event_date="event_date",
            columns=(
                C("event_id", "id"), C("case_id", "ref", required=True),
                C("event_date", "date", required=True),
                C("event_type", "code", codes=(
                    "ISSUED", "DEFENCE_FILED", "ALLOCATED", "HEARING_LISTED", "JUDGMENT_ENTERED",
                    "WARRANT_ISSUED", "CLOSED")),
            ),
        ),
        TableSpec(
            name="hearings",
            grain="hearing",
            parent="cases",
            event_date="hearing_date",
            columns=(
                C("hearing_id", "id"), C("case_id", "ref", required=True),
                C("hearing_date", "date", required=True),
                C("hearing_type", "code", codes=("DIRECTIONS", "SMALL_CLAIMS", "FAST_TRACK", "POSSESSION")),
                C("outcome", "code", codes=("ADJOURNED", "DECIDED", "SETTLED", "VACATED")),
            ),
        ),
        TableSpec(
            name="judgments",
            grain="judgment",
            parent="cases",
            event_date="judgment_date",
            columns=(
                C("judgment_id", "id"), C("case_id", "ref", required=True),
                C("judgment_date", "date", required=True),
                C("judgment_type", "code", codes=("DEFAULT", "ADMISSION", "TRIAL", "POSSESSION_ORDER")),
                C("amount", "float", min_value=0),
            ),
        ),
        TableSpec(
            name="warrants",
            grain="warrant of control or possession",
            parent="cases",
            event_date="issue_date",
            columns=(
                C("warrant_id", "id"), C("case_id", "ref", required=True),
                C("issue_date", "date", required=True),
                C("warrant_type", "code", codes=("CONTROL", "POSSESSION", "DELIVERY")),
                C("executed", "flag"),
            ),
        ),
        TableSpec(
            name="parties",
            grain="party per civil case (people and companies)",
            parent="cases",
            person_fields={
                "forename": ("forename",), "surname": ("surname",), "dob": ("dob",),
                "postcode": ("postcode",), "address": ("address_line1",),
            },
            case_fields={"case_id": "case_id", "party_role": "role"},
            columns=(
                C("party_id", "id"), C("case_id", "ref", required=True),
                C("role", "code", codes=("CLAIMANT", "DEFENDANT")),
                C("party_type", "code", codes=("INDIVIDUAL", "COMPANY")),
                C("forename", "name"), C("surname", "name"),
                C("company_name", "name"),
                C("dob", "dob"), C("postcode", "postcode"), C("address_line1", "text"),
            ),
        ),
    ),
)


def _oasys_child(name: str, grain: str, *columns: C, own_id: str | None = None) -> TableSpec:
    ident = (C(own_id, "id"), C("assessment_id", "ref", required=True)) if own_id else (
        C("assessment_id", "id"),)
    return TableSpec(
        name=name, grain=grain, parent="assessments_metadata", columns=(*ident, *columns),
    )


OASYS = SourceSpec(
    key="oasys",
    system="OASys",
    description="Offender Assessment System: assessments and their sections.",
    date_format="%d/%m/%Y",
    sex_codes={"M": "M", "F": "F"},
    person_id_name="estimated_offender_id",
    tables=(
        TableSpec(
            name="assessments_metadata",
            grain="assessment",
            event_date="assessment_date",
            person_fields={
                "forename": ("forename1",), "middle_names": ("forename2",),
                "surname": ("surname",), "dob": ("dob",), "sex": ("gender",),
                "pnc": ("pnc_id",), "cro": ("cro_number",),
            },
            columns=(
                C("assessment_id", "id"),
                C("offender_pk", "text", required=True, description="OASys offender key"),
                C("forename1", "name"), C("forename2", "name"), C("surname", "name"),
                C("dob", "dob"), C("gender", "sex"), C("ethnicity", "ethnicity"),
                C("pnc_id", "pnc"), C("cro_number", "cro"),
                C("crn", "text"), C("prison_number", "text"),
                C("assessment_date", "date", required=True),
                C("assessment_type", "code", codes=("FULL", "REVIEW", "TERMINATION", "TRANSFER")),
                C("setting", "code", codes=("CUSTODY", "COMMUNITY")),
                C("status", "code", codes=("COMPLETE", "LOCKED_INCOMPLETE")),
            ),
        ),
        _oasys_child(
            "oasys_assessments_details_bcs", "basic custody screening of an assessment",
            C("accommodation_need", "flag"), C("employment_need", "flag"),
            C("finance_need", "flag"), C("health_need", "flag"), C("drug_need", "flag"),
            C("alcohol_need", "flag"),
        ),
        _oasys_child(
            "oasys_assessments_details_core_risk", "core risk scores of an assessment",
            C("ogrs3_score", "int", min_value=0, max_value=100), C("ogp_score", "int", min_value=0, max_value=100),
            C("ovp_score", "int", min_value=0, max_value=100),
            C("risk_level", "code", codes=RISK_LEVELS),
        ),
        _oasys_child(
            "oasys_assessments_details_isp", "sentence plan objective",
            C("objective_code", "code", codes=(
                "ACCOMMODATION", "EDUCATION", "FINANCE", "RELATIONSHIPS", "LIFESTYLE", "DRUGS",
                "ALCOHOL", "EMOTIONAL", "THINKING", "ATTITUDES")),
            C("objective_status", "code", codes=("OPEN", "ACHIEVED", "NOT_ACHIEVED")),
            own_id="objective_id",
        ),
        _oasys_child(
            "oasys_assessments_details_rm2000", "Risk Matrix 2000 score (sexual offending)",
            C("rm2000_score", "int", min_value=0, max_value=20),
            C("rm2000_category", "code", codes=RISK_LEVELS),
        ),
        _oasys_child(
            "oasys_assessments_details_rmp", "risk management plan item",
            C("plan_area", "code", codes=("SUPERVISION", "MONITORING", "INTERVENTIONS", "VICTIM_SAFETY")),
            C("agency", "code", codes=("PROBATION", "POLICE", "PRISON", "HEALTH", "OTHER")),
            own_id="rmp_id",
        ),
        _oasys_child(
            "oasys_assessments_details_rosh", "risk of serious harm ratings of an assessment",
            C("rosh_public", "code", codes=RISK_LEVELS),
            C("rosh_known_adult", "code", codes=RISK_LEVELS),
            C("rosh_children", "code", codes=RISK_LEVELS),
            C("rosh_staff", "code", codes=RISK_LEVELS),
            C("rosh_overall", "code", codes=RISK_LEVELS),
        ),
    ),
)

SOURCES: dict[str, SourceSpec] = {
    s.key: s for s in (MAGISTRATES, CROWN_COURT, PRISON, PROBATION, FAMILY, CIVIL, OASYS)
}


def all_tables() -> list[tuple[SourceSpec, TableSpec]]:
    return [(s, t) for s in SOURCES.values() for t in s.tables]
