"""The example joins every release README shows, kept here so tests run exactly these queries."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExampleQuery:
    title: str
    explanation: str
    sql: str
    tables: tuple[tuple[str, str], ...]  # (source, table) the query reads


EXAMPLES = (
    ExampleQuery(
        "Offences of each magistrates' defendant-case (parent and child table)",
        "Each offence row carries its defendant-case's hashed id.",
        """
SELECT f.offence_group AS most_serious_group, o.offence_group, count(*) AS offences
FROM magistrates.hocas_flatfile f
JOIN magistrates.hocas_all_offence o ON o.defendant_case_id_hash = f.defendant_case_id_hash
GROUP BY ALL
ORDER BY offences DESC, most_serious_group, o.offence_group
""",
        (("magistrates", "hocas_flatfile"), ("magistrates", "hocas_all_offence")),
    ),
    ExampleQuery(
        "Magistrates' cases sent to the Crown Court (case lookup)",
        "`linking.case_lookup` pairs a magistrates' defendant-case with the Crown Court defendant-on-case it "
        "became.",
        """
SELECT m.offence_group, x.most_serious_disposal, count(*) AS cases
FROM magistrates.hocas_flatfile m
JOIN linking.case_lookup c ON c.defendant_case_id_hash = m.defendant_case_id_hash
JOIN crown_court.xhibit_flatfile x ON x.defendant_on_case_id_hash = c.defendant_on_case_id_hash
GROUP BY ALL
ORDER BY cases DESC, m.offence_group, x.most_serious_disposal
""",
        (("magistrates", "hocas_flatfile"), ("linking", "case_lookup"), ("crown_court", "xhibit_flatfile")),
    ),
    ExampleQuery(
        "Magistrates' defendants who later had a custodial journey (cross-justice lookup)",
        "Map each dataset's person id to a cross-justice person id (here at the medium threshold), then "
        "join on that id. Count people, not rows: a person can have many cases and custodial journeys.",
        """
WITH defendants AS (
    SELECT DISTINCT l.xjs_person_id_medium AS person, f.first_hearing_date
    FROM magistrates.hocas_flatfile f
    JOIN linking.xjs_lookup l
      ON l.source_dataset = 'magistrates' AND l.dataset_person_id = f.estimated_defendant_id
),
prisoners AS (
    SELECT DISTINCT l.xjs_person_id_medium AS person, p.reception_date
    FROM prison.nomis_flatfile p
    JOIN linking.xjs_lookup l
      ON l.source_dataset = 'prison' AND l.dataset_person_id = p.estimated_offender_id
)
SELECT count(DISTINCT d.person) AS people
FROM defendants d
JOIN prisoners p ON p.person = d.person AND p.reception_date >= d.first_hearing_date
""",
        (("magistrates", "hocas_flatfile"), ("prison", "nomis_flatfile"), ("linking", "xjs_lookup")),
    ),
    ExampleQuery(
        "How many datasets each person appears in",
        "One row per cross-justice person with the datasets they were found in.",
        """
SELECT xjs_person_id_medium AS person, count(DISTINCT source_dataset) AS datasets,
       string_agg(DISTINCT source_dataset, ', ' ORDER BY source_dataset) AS found_in
FROM linking.xjs_lookup
GROUP BY ALL
ORDER BY datasets DESC, person
LIMIT 20
""",
        (("linking", "xjs_lookup"),),
    ),
    ExampleQuery(
        "Requirements of each probation event (parent and child table)",
        "Requirements carry their event's hashed id.",
        """
SELECT e.event_type, r.requirement_type, count(*) AS requirements, avg(r.length) AS mean_length
FROM probation.delius_flatfile e
JOIN probation.delius_rqmnt r ON r.event_id_hash = e.event_id_hash
GROUP BY ALL
ORDER BY requirements DESC
""",
        (("probation", "delius_flatfile"), ("probation", "delius_rqmnt")),
    ),
    ExampleQuery(
        "First and latest OASys risk score of each offender (one-to-one detail table)",
        "The core-risk table has one row per assessment, keyed by the assessment's hashed id.",
        """
SELECT a.estimated_offender_id,
       arg_min(r.ogrs3_score, a.assessment_date) AS first_ogrs3,
       arg_max(r.ogrs3_score, a.assessment_date) AS latest_ogrs3
FROM oasys.assessments_metadata a
JOIN oasys.oasys_assessments_details_core_risk r ON r.assessment_id_hash = a.assessment_id_hash
GROUP BY ALL
ORDER BY a.estimated_offender_id
LIMIT 20
""",
        (("oasys", "assessments_metadata"), ("oasys", "oasys_assessments_details_core_risk")),
    ),
)


def example_queries() -> tuple[ExampleQuery, ...]:
    return EXAMPLES


def markdown_blocks() -> str:
    """The examples as the README shows them (a test keeps the README equal to this)."""
    return "\n".join(f"```sql\n-- {e.title}\n{e.sql.strip()}\n```\n" for e in EXAMPLES)
