"""The publish gate: everything about to leave is scanned again, and a release with any finding is refused.

Run by `write_release` before a single file is written:

* every table: the PII scan (identifier shapes, withheld column names, and, when given, the
  raw names, addresses and system ids of its dataset and each row's date of birth), its
  contract (the release schema) and, for de-identified row-level tables, re-identification risk;
* every catalogue: every listed value and every summary cell, through the same PII scan, and
  the output rule that no shown count is under 10.

A finding refuses the whole release (`PublishRefused`, naming table, column and identifier
class with a masked example); what passed is recorded per table in the manifest.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache

import polars as pl

from datafirst_assets.catalogue.build import Catalogue
from datafirst_assets.contracts.core import ContractReport, validate_table
from datafirst_assets.deidentify.disclosure import RiskResult, RiskRule, reidentification_risk
from datafirst_assets.deidentify.pii_gate import (
    Finding,
    RawIdentifiers,
    raw_value_findings,
    scan_table,
    shape_findings,
    shape_identifiers,
)
from datafirst_assets.deidentify.release_spec import ReleaseTable, release_tables
from datafirst_assets.deidentify.schemas import release_schema
from datafirst_assets.warehouse.content import content_of

CATALOGUE_TEXT_COLUMNS = ("values", "min", "median", "max")
MIN_SHOWN_COUNT = 10


class PublishRefused(ValueError):
    """A gate found something that must not be published; nothing was written."""


@dataclass
class TableGate:
    source: str
    table: str
    findings: list[Finding]
    contract: ContractReport
    risk: RiskResult | None = None
    risk_gated: bool = True

    @property
    def passed(self) -> bool:
        return (not self.findings and self.contract.passed
                and (self.risk is None or self.risk.passed or not self.risk_gated))

    def manifest_entry(self, checks: Mapping[str, bool] | None = None) -> dict:
        entry = {
            "passed": self.passed,
            "no_identifiers": {"passed": not self.findings, "findings": len(self.findings)},
            "contract": {"name": self.contract.contract, "passed": self.contract.passed,
                         "failing_rules": len(self.contract.failures)},
            "disclosure": ({k: v for k, v in self.risk.summary().items() if k != "table"}
                           if self.risk is not None and self.risk.key else {"note": "no risk key (not row-level "
                                                                                  "data about people)"}),
        }
        if checks:
            entry["checks"] = dict(sorted(checks.items()))
        return entry


@dataclass
class CarriedGate:
    """A table whose gates' inputs (its content, its dataset's raw identifiers and dates of birth,
    the rules and the code) are those of a table the previous release published: that release's
    gate results stand, recorded with the release they come from."""

    source: str
    table: str
    previous: Mapping
    from_release: str
    findings: tuple = ()
    risk: None = None
    risk_gated: bool = False

    @property
    def passed(self) -> bool:
        return bool(self.previous.get("passed"))

    def manifest_entry(self, checks: Mapping[str, bool] | None = None) -> dict:
        entry = {k: v for k, v in self.previous.items() if k not in ("checks", "carried_over_from")}
        entry["carried_over_from"] = self.from_release
        if checks:
            entry["checks"] = dict(sorted(checks.items()))
        return entry


@dataclass
class ReleaseGates:
    tables: dict[tuple[str, str], TableGate | CarriedGate] = field(default_factory=dict)
    catalogue_findings: list[Finding] = field(default_factory=list)
    catalogue_values_scanned: int = 0

    @property
    def passed(self) -> bool:
        return not self.catalogue_findings and all(g.passed for g in self.tables.values())

    def problems(self) -> list[str]:
        lines = []
        for (source, table), gate in self.tables.items():
            if isinstance(gate, CarriedGate):
                lines += [] if gate.passed else [f"{source}.{table}: carried gates did not pass"]
                continue
            lines += [f"PII: {f}" for f in gate.findings]
            lines += [f"contract {source}.{table}: {f}" for f in gate.contract.failures]
            if gate.risk is not None and not gate.risk.passed and gate.risk_gated:
                lines.append(f"disclosure {source}.{table}: mean re-identification risk {gate.risk.mean_risk:.3f} "
                             f"> {gate.risk.max_mean_risk}")
        lines += [f"catalogue: {f}" for f in self.catalogue_findings]
        return lines


def _without_column_names(identifiers: RawIdentifiers) -> RawIdentifiers:
    """The values to look for in a catalogue (its own column names are not data): the same value sets
    and their Series, built once for the dataset's tables and its catalogue scan, not once for each."""
    return replace(identifiers, column_names=set())


@cache
def _declared_codes() -> pl.DataFrame:
    """(table, column, upper-case value) of every declared code of a released column."""
    rows = [(table, column, code.upper()) for (_, table), spec in release_tables().items()
            for column, codes in spec.code_lists.items() for code in codes]
    return pl.DataFrame(rows, schema={"table": pl.String, "column": pl.String, "_upper": pl.String},
                        orient="row").unique()


def _undeclared_values(values: pl.DataFrame) -> pl.DataFrame:
    """A catalogue's listed values less those on their column's declared code list (a risk level
    HIGH is a code, though at a million people someone is called High)."""
    keyed = values.with_columns(pl.col("value").cast(pl.String).str.to_uppercase().alias("_upper"))
    return keyed.join(_declared_codes(), on=["table", "column", "_upper"], how="anti").drop("_upper")


def _catalogue_frames(name: str, catalogue: Catalogue) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A catalogue's listed values (less declared codes) and its summary cells, as text."""
    values = _undeclared_values(catalogue.values).select(pl.col("value").cast(pl.String))
    cells = catalogue.frame.select([pl.col(c).cast(pl.String) for c in CATALOGUE_TEXT_COLUMNS])
    return values, cells


def _small_counts(name: str, catalogue: Catalogue) -> Finding | None:
    small = catalogue.values.filter(pl.col("count").is_not_null() & (pl.col("count") < MIN_SHOWN_COUNT))
    return (Finding(f"catalogue:{name}", "count", f"count under {MIN_SHOWN_COUNT} shown", small.height,
                    str(small["count"][0])) if small.height else None)


@dataclass
class _CatalogueText:
    """Every catalogue's text as the PII scan reads it (`scan_table` on `_catalogue_frames`), made
    once per release: per text column (``columns``: table label, column) its distinct values
    normalised (``values``, column ``g``: the column's position) and the identifier shapes found
    in it. `compare` looks for one dataset's raw identifiers in all of them in one pass per kind:
    a `scan_table` per catalogue and dataset (a pass per column and kind, 1,700 in the demo's
    two releases) was most of the catalogue scan's time. The findings are those `scan_table`
    gives on each catalogue (test_gates compares them).

    The text of ``no_names`` given to `compare`: made once per dataset by `_without_column_names`
    (its value Series are built on first use; rebuilt per catalogue they took most of the scan)."""

    columns: list[tuple[str, str]]
    shapes: list[list[Finding]]
    values: pl.DataFrame
    by_catalogue: dict[str, list[int]]
    small: dict[str, Finding | None]
    scanned: dict[str, int]
    identity: dict[int, list[Finding]] = field(default_factory=dict)  # by column, from `compare`

    @classmethod
    def of(cls, catalogues: Mapping[str, Catalogue]) -> _CatalogueText:
        text = cls([], [], pl.DataFrame(), {}, {}, {})
        frames = []
        for name, catalogue in catalogues.items():
            values, cells = _catalogue_frames(name, catalogue)
            text.by_catalogue[name] = []
            for table, frame in ((f"catalogue:{name}.values", values), (f"catalogue:{name}.summary", cells)):
                for column in frame.columns:
                    distinct = frame[column].drop_nulls().unique()
                    text.by_catalogue[name].append(len(text.columns))
                    # normalised and scanned for shapes as scan_table does it (the codes are already out)
                    normalised, shapes = shape_findings(table, column, distinct)
                    text.shapes.append(shapes)
                    frames.append(pl.DataFrame({"g": len(text.columns), "v": normalised},
                                               schema={"g": pl.Int64, "v": pl.String}))
                    text.columns.append((table, column))
            text.small[name] = _small_counts(name, catalogue)
            text.scanned[name] = values.height + cells.height * cells.width
        text.values = pl.concat(frames) if frames else pl.DataFrame(schema={"g": pl.Int64, "v": pl.String})
        return text

    def findings(self, name: str, shapes: bool) -> list[Finding]:
        """Catalogue ``name``'s findings against the identifiers last given to `compare`, in the
        order `scan_table` gives them column by column (with the shapes when ``shapes``), then the
        counts under 10 shown."""
        found = []
        for g in self.by_catalogue[name]:
            found += (self.shapes[g] if shapes else []) + self.identity.get(g, [])
        small = self.small[name]
        return found + ([small] if small else [])

    def compare(self, no_names: RawIdentifiers) -> None:
        """Every column's values equal to ``no_names``' raw names, addresses and system ids, by column."""
        self.identity = raw_value_findings(self.columns, self.values, no_names)


def _dataset_identifiers(source: str, identifiers: Mapping[str, RawIdentifiers]) -> RawIdentifiers:
    """What a dataset's tables are scanned for: identifier shapes, withheld column names and its raw values."""
    known = shape_identifiers(None if source == "linking" else source)
    if source not in identifiers:
        return known
    # the raw values' sets and Series shared, not copied (at 50,000 people 350,000 ids a dataset)
    raw = identifiers[source]
    return replace(raw, column_names=known.column_names | raw.column_names)


#: Released columns whose contract (`deidentify.schemas`) holds every value to a keyed hash: 64 hex
#: characters (`schemas.HEX_HASH`; test_release_gate_cost checks the two agree).
HASHED_ROLES = ("primary_key", "foreign_key", "system_id")
HASH_SHAPED = r"^[0-9A-F]{64}$"  # a keyed hash after the scan's normalisation (upper case)


def hash_shaped_identifier(known: RawIdentifiers) -> bool:
    """Whether any of the raw names, addresses and system ids is shaped like a keyed hash (the pattern
    only on values of its length: a pass of the pattern over a dataset's ids cost as much as a table's scan)."""
    for kind in ("name", "address", "system_id"):
        values = known.series(kind)
        if values.filter(values.str.len_bytes() == 64).str.contains(HASH_SHAPED).any():
            return True
    return False


def scanned_columns(frame: pl.DataFrame, spec: ReleaseTable, contract: ContractReport,
                    hash_shaped: bool) -> pl.DataFrame:
    """`frame` as the PII scan needs to read it: its keyed-hash columns emptied (names kept) when the
    contract holds them to 64 hex and no raw identifier of the dataset has that shape, so that the
    scan, which finds no identifier shape in a 64-hex value, could find nothing in them. They hold
    most of a table's distinct values (one or more per row), and scanning them was most of the gate's
    time; the findings are those of scanning them (test_release_gate_cost). A broken contract or a hash-shaped
    raw identifier: every column is scanned."""
    if not contract.passed or hash_shaped:
        return frame
    hashed = [c.name for c in spec.columns if c.role in HASHED_ROLES and frame.schema.get(c.name) == pl.String]
    return frame.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in hashed) if hashed else frame


def validated_against_release_schema(contract: str | None, contract_spec: ReleaseTable | None, spec: ReleaseTable,
                                     fingerprint: str | None, validated: Iterable[object]) -> bool:
    """Whether a stored table's content (its `warehouse.content.table_fingerprint`) is content that was
    validated, every row, against its warehouse contract `contract` (`validated`: `contract_content`
    records of such validations, e.g. the IO manager's when it wrote the table), a contract that is the
    release schema of `contract_spec` (`contracts.registry.release_spec_of`), the very spec the table
    is published by: the gate's contract (`release_schema(spec)`) then holds on it too."""
    if contract is None or contract_spec is None or contract_spec != spec or fingerprint in (None, "missing"):
        return False
    return content_of(fingerprint, contract) in {getattr(v, "value", v) for v in validated}


def _table_gate(kind: str, key: tuple[str, str], frame: pl.DataFrame, spec: ReleaseTable, known: RawIdentifiers,
                dates_of_birth: pl.Series | None, rule: RiskRule | None, hash_shaped: bool = True,
                contract_held: bool = False) -> TableGate:
    """One table's gates: the PII scan (against its dataset's `known` identifiers; `hash_shaped`: some
    of them look like keyed hashes), contract and risk. `contract_held`: every row of this very content
    was validated against the release schema's rules already (see `scan_release`), so it holds."""
    source, name = key
    # a held contract's report names the schema as `release_schema` does, without building it (pandera
    # schemas cost ~12 ms a table to build)
    contract = ContractReport(contract=f"{spec.source}_{spec.name}", rows=frame.height) if contract_held \
        else validate_table(frame, release_schema(spec))
    scanned = scanned_columns(frame, spec, contract, hash_shaped)
    try:
        findings = scan_table(f"{source}.{name}", scanned, known, dates_of_birth=dates_of_birth, codes=spec.code_lists)
    except ValueError:  # dates of birth not aligned with the rows: scan without them
        findings = scan_table(f"{source}.{name}", scanned, known, codes=spec.code_lists)
    risk = reidentification_risk(frame, spec, rule or RiskRule()) if kind == "deidentified" else None
    return TableGate(source, name, findings, contract, risk, risk_gated=rule is not None)


def scan_release(
    kind: str,
    tables: Mapping[tuple[str, str], pl.DataFrame],
    specs: Mapping[tuple[str, str], ReleaseTable],
    catalogues: Mapping[str, Catalogue],
    *,
    identifiers: Mapping[str, RawIdentifiers] | None = None,
    dates_of_birth: Mapping[tuple[str, str], pl.Series] | None = None,
    risk_rules: Mapping[tuple[str, str], RiskRule] | None = None,
    carried: Mapping[tuple[str, str], CarriedGate] | None = None,
    contract_held: Container[tuple[str, str]] = (),
) -> ReleaseGates:
    """Every gate on every table and catalogue of a release about to be published (see the module doc).

    Risk is measured (and recorded) on every de-identified table; it refuses the release only when
    `risk_rules` are given (the release asset passes the `release_settings` rule of each table).
    Tables in `carried` keep the previous release's gate results (see `CarriedGate`); catalogues
    are always scanned. Tables in `contract_held` are not validated against their contract again:
    the caller knows that every row of exactly the content read was validated against the same
    rules (the warehouse's contract of the table, when it was written: `defs.release`), and its
    report is the passing one validating would give; the PII scan and risk still read every row."""
    identifiers = identifiers or {}
    dates_of_birth = dates_of_birth or {}
    gates = ReleaseGates()
    gates.tables.update(carried or {})
    # Catalogues against every dataset's identifiers, one dataset at a time (all of them merged
    # would hold every dataset's names and ids at once); each finding is reported once. A
    # dataset's tables and the catalogues are scanned while its identifiers are loaded, so each
    # dataset's are read once (they are read on use, one dataset held at a time).
    found: dict[tuple[str, str, str], Finding] = {}
    scanned: dict[str, int] = {}
    text: _CatalogueText | None = None  # the catalogues' text, read once (on first use)
    catalogue_sources = list(identifiers) or [None]
    for source in dict.fromkeys([s for s, _ in tables] + catalogue_sources):
        to_scan = [k for k in tables if k[0] == source and k not in gates.tables]
        known = _dataset_identifiers(source, identifiers) if to_scan else None  # value Series built once
        hash_shaped = hash_shaped_identifier(known) if to_scan else True
        for key in to_scan:
            gates.tables[key] = _table_gate(kind, key, tables[key], specs[key], known,
                                            dates_of_birth.get(key), (risk_rules or {}).get(key), hash_shaped,
                                            contract_held=key in contract_held)
        if source not in catalogue_sources:
            continue
        known = _without_column_names(identifiers[source]) if source is not None else RawIdentifiers()
        text = text if text is not None else _CatalogueText.of(catalogues)
        text.compare(known)
        for name in catalogues:
            findings = text.findings(name, shapes=name not in scanned)
            scanned[name] = text.scanned[name]
            for finding in findings:
                key = (finding.table, finding.column, finding.identifier)
                if key not in found or finding.rows > found[key].rows:
                    found[key] = finding
    gates.catalogue_findings += list(found.values())
    gates.catalogue_values_scanned += sum(scanned.values())
    return gates


def refuse_unless_passed(kind: str, gates: ReleaseGates) -> None:
    if gates.passed:
        return
    problems = gates.problems()
    shown = "\n".join(f"- {p}" for p in problems[:50])
    more = f"\n- ... and {len(problems) - 50} more" if len(problems) > 50 else ""
    raise PublishRefused(f"Refusing to publish the {kind} release: {len(problems)} finding(s); nothing was "
                         f"written.\n{shown}{more}")
