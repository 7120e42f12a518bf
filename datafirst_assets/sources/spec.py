"""Declarative description of what each source system delivers.

Everything downstream (the simulator, raw loading, staging, pandera schemas, linkage fields,
asset definitions) is driven from these specs, so a new table or source is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# How a raw text column becomes a typed staged column.
#   id        source system id of the row; must be present and unique within the table
#   ref       reference to another table's id (kept as text)
#   text      free text / other identifiers (trimmed, empty -> null)
#   name      personal or company name (upper-cased, cleaned)
#   date      date in the source's date format (unparseable -> quarantine)
#   dob       date of birth (as date, plus placeholder detection)
#   sex       sex in the source's coding, mapped to M / F / null
#   ethnicity self-defined ethnicity code (2001 census 16+1), junk codes nulled
#   postcode  UK postcode, normalised to "AB1 2CD", invalid -> null
#   pnc       Police National Computer id, normalised to YYYY/NNNNNNNA, invalid -> null
#   cro       Criminal Records Office number, normalised to NNNNNN/YYA, invalid -> null
#   code      categorical code; values outside `codes` quarantined
#   int       integer (unparseable -> quarantine)
#   float     decimal (unparseable -> quarantine)
#   flag      Y/N -> boolean
ColumnKind = Literal[
    "id", "ref", "text", "name", "date", "dob", "sex", "ethnicity", "postcode", "pnc", "cro",
    "code", "int", "float", "flag",
]

# Linkage fields a person table may provide (see linkage/): the standardised names
# that person_records uses whatever the source calls them.
LinkageField = Literal[
    "forename", "middle_names", "surname", "dob", "sex", "postcode", "address", "pnc", "cro",
]


# Longest raw value (in characters) each kind may hold unless a column says otherwise: longer
# values are a broken extract (a field run into the next, a binary blob), so the row is quarantined.
MAX_LENGTH = {
    "id": 40, "ref": 40, "text": 200, "name": 80, "date": 30, "dob": 30, "sex": 20, "ethnicity": 20,
    "postcode": 20, "pnc": 20, "cro": 20, "code": 60, "int": 20, "float": 30, "flag": 10,
}


# What a column of each kind holds once staged: the description of a column the registry does not describe.
KIND_MEANING = {
    "id": "the source system's identifier of the row",
    "ref": "identifier of the row it belongs to in the parent table",
    "text": "free text as recorded",
    "name": "name in upper case, accents folded to ASCII (the spelling as written is in <column>_original)",
    "date": "date",
    "dob": "date of birth (null when unusable: see <column>_issue)",
    "sex": "sex, M or F (null when not recorded or not recognised)",
    "ethnicity": "ethnicity code as recorded (ONS 18+1 categories)",
    "postcode": "postcode, upper case with one space (null when not a valid postcode)",
    "pnc": "Police National Computer number (null when not valid)",
    "cro": "Criminal Records Office number (null when not valid)",
    "code": "code",
    "int": "whole number",
    "float": "number",
    "flag": "yes / no flag",
}


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: ColumnKind
    required: bool = False  # a missing value quarantines the row
    codes: tuple[str, ...] = ()  # allowed values for kind == "code"
    description: str = ""
    max_length: int | None = None  # characters in the raw value; None: MAX_LENGTH of the kind
    # Allowed range of an int / float column (e.g. 0 for durations): values outside are quarantined.
    min_value: float | None = None
    max_value: float | None = None

    @property
    def length_limit(self) -> int:
        return self.max_length or MAX_LENGTH[self.kind]

    @property
    def text(self) -> str:
        """The registry's description, else what a column of this kind holds (the UI's Columns tab)."""
        if self.description:
            return self.description
        label = self.name.replace("_", " ").capitalize()
        meaning = KIND_MEANING[self.kind].replace("<column>", self.name)
        if self.kind == "code" and self.codes:
            meaning = "one of " + ", ".join(self.codes[:12]) + (", ..." if len(self.codes) > 12 else "")
        return f"{label}: {meaning}"


@dataclass(frozen=True)
class TableSpec:
    name: str
    grain: str  # "one row per ..." for catalogues and docs
    columns: tuple[ColumnSpec, ...]
    parent: str | None = None  # table whose id the `ref` column points at
    # Person tables: which column provides each linkage field (forename may be a list).
    person_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The column that holds the date of the event, used for ages and journeys downstream.
    event_date: str | None = None
    # Person tables of case systems (family, civil): the case the party belongs to and their
    # role in it, as person-record column -> table column ("case_id", "party_role"). Parties of
    # one case are different people; a child on a case is rarely an adult party elsewhere.
    case_fields: dict[str, str] = field(default_factory=dict)

    @property
    def id_column(self) -> str:
        return next(c.name for c in self.columns if c.kind == "id")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def is_person_table(self) -> bool:
        return bool(self.person_fields)

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True)
class SourceSpec:
    key: str  # e.g. "magistrates"
    system: str  # e.g. "Libra"
    description: str
    date_format: str  # strptime format of every date column in its extracts
    sex_codes: dict[str, str]  # raw code -> "M" / "F"; anything else -> null
    tables: tuple[TableSpec, ...]
    person_id_name: str  # name of the per-dataset person id in research tables
    delimiter: str = ","
    encoding: str = "utf-8"

    @property
    def table_names(self) -> list[str]:
        return [t.name for t in self.tables]

    def table(self, name: str) -> TableSpec:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"source {self.key!r} has no table {name!r}")

    @property
    def person_table(self) -> TableSpec:
        return next(t for t in self.tables if t.is_person_table)
