"""Derived analytics tables, defined once and materialised for each release variant.

<variant>/<source>/<table> (release tables)  -> derived/<variant>/person_journeys
derived/<variant>/person_journeys            -> derived/<variant>/repeat_offending_profile
                                                 (+ data/reports/repeat_offending_<variant>.{md,html})
both derived tables                          -> catalogue/derived (synthetic: catalogue/synthetic/derived)
                                                 (data/catalogues/<variant>/derived.{md,html})

`variant` is `deidentified` or `synthetic`: the same code reads either release, which is the
synthetic release's promise. Each derived table carries two blocking gates run before it is stored:
`schema_valid` (its pandera contract; the profile's also proves no shown count is under 10) and
`no_identifiers` (the PII scan for identifier shapes and withheld column names).

    derived_assets(("deidentified",))                  # one variant
    derived_assets_for(upstream_assets)                # every variant whose release assets exist

No `from __future__ import annotations`: Dagster inspects annotations at runtime.
"""

import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path

from datafirst_assets.common.pandera_polars import pa
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    Config,
    MetadataValue,
    Output,
    TableColumn,
    TableSchema,
    asset,
)

from datafirst_assets.common.tables import bullet_list
from datafirst_assets.reporting import file_url
from datafirst_assets.catalogue.build import build_catalogue
from datafirst_assets.defs.linkage import LinkageSettings
from datafirst_assets.defs.release import catalogue_folder, catalogue_key, input_name, table_key
from datafirst_assets.defs.gates import pii_check, refuse_if_failed
from datafirst_assets.deidentify.pii_gate import scan_table, shape_identifiers
from datafirst_assets.derived import DERIVED_TABLES
from datafirst_assets.derived.person_journeys import (COLUMNS_READ, PERSON, PERSON_JOURNEYS, journeys_change,
                                                      journeys_from, load_state, save_state, unlinked_counts)
from datafirst_assets.derived.report import RELEASE_LABELS, SYNTHETIC, profile_report, summary_markdown
from datafirst_assets.derived.repeat_offending_profile import REPEAT_OFFENDING_PROFILE, profile_from_journeys
from datafirst_assets.derived.spec import DERIVED, DerivedTable
from datafirst_assets.common.checks import failure_summary
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.content import VALIDATED_CONTENT
from datafirst_assets.warehouse.io_manager import ChangedRows, StoredTable
from datafirst_assets.warehouse.unchanged import (FINGERPRINT, inputs_fingerprint, kept_if_unchanged,
                                                  known_fingerprints, latest_metadata)

GROUP = "derived"
VARIANTS = ("deidentified", "synthetic")


def derived_group(variant: str) -> str:
    """Derived tables of the real release and of the synthetic one in separate groups."""
    return GROUP if variant == "deidentified" else f"{variant}_{GROUP}"


class DerivedSettings(Config):
    """Run configuration of `person_journeys`."""

    # YYYY-MM-DD the journeys are observed to (open custody, repeat windows); empty: the latest
    # contact date in the release.
    as_of_date: str = ""


def derived_key(variant: str, name: str) -> AssetKey:
    return AssetKey([DERIVED, variant, name])


def _column_schema(table: DerivedTable) -> TableSchema:
    return TableSchema(columns=[TableColumn(name=c.name, type=str(c.dtype), description=c.description)
                                for c in table.columns])


def _schema_check(key: AssetKey, table: DerivedTable, frame: pl.DataFrame) -> AssetCheckResult:
    detail: list[str] = []
    try:
        table.pandera_schema().validate(frame, lazy=True)
    except pa.errors.SchemaErrors as error:
        detail = failure_summary(error)["detail"]
    return AssetCheckResult(
        asset_key=key, check_name="schema_valid", passed=not detail,
        metadata={"problems": MetadataValue.md(bullet_list(detail)), "rows": frame.height},
    )


def _check_specs(key: AssetKey, table: DerivedTable) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec("schema_valid", asset=key, blocking=True,
                       description=f"Before storing: rows satisfy the contract of `{DERIVED}.{table.name}` "
                       "(types, keys, ranges, rules across columns; no shown count under 10 in the profile)."),
        AssetCheckSpec("no_identifiers", asset=key, blocking=True,
                       description="PII gate, before storing: no value shaped like a PNC, CRO, postcode, prison "
                       "number or CRN and no withheld identifier column."),
    ]


def _gates(key: AssetKey, table: DerivedTable, frame: pl.DataFrame):
    """The derived table's gates; raises (nothing stored) after yielding them when one failed."""
    results = [_schema_check(key, table, frame),
               pii_check(key, scan_table(f"{DERIVED}.{table.name}", frame, shape_identifiers()))]
    yield from results
    refuse_if_failed(key.to_user_string(), results, ["schema_valid", "no_identifiers"])


def _label(variant: str) -> str:
    return RELEASE_LABELS.get(variant, f"{variant} release")


def build_derived_assets(variant: str) -> list[AssetsDefinition]:
    """`derived/<variant>/person_journeys`, `.../repeat_offending_profile` (reading `<variant>/...` tables)
    and the derived tables' catalogue."""
    journeys_key, profile_key = derived_key(variant, PERSON_JOURNEYS.name), derived_key(variant, "repeat_offending_profile")
    stored = {"schema": f"{DERIVED}_{variant}", "release_variant": variant}

    @asset(
        key=journeys_key,
        # Read by handle (only the columns the journeys are built from), after the keep check: a
        # kept step loads nothing.
        deps=[table_key(variant, s, t) for s, t in COLUMNS_READ],
        group_name=derived_group(variant),
        metadata={**stored, "dagster/column_schema": _column_schema(PERSON_JOURNEYS)},
        kinds={"polars", "duckdb"},
        description=f"{PERSON_JOURNEYS.description} ({_label(variant)}.)",
        check_specs=_check_specs(journeys_key, PERSON_JOURNEYS),
    )
    def _person_journeys(context: AssetExecutionContext, config: DerivedSettings, linkage: LinkageSettings,
                         warehouse: Warehouse):
        # Made from the tables it reads and the as-of setting alone: a synthetic release kept
        # as it was (its summaries within the refresh tolerance) keeps its journeys too.
        read = {input_name(s, t): StoredTable(warehouse.database, f"{variant}_{s}", t, columns=tuple(columns))
                for (s, t), columns in COLUMNS_READ.items()}
        fingerprint = _release_fingerprint(context, warehouse, variant, config.as_of_date)
        if (kept := kept_if_unchanged(context, fingerprint, linkage.mode)) is not None:
            yield from kept
            return
        as_of = dt.date.fromisoformat(config.as_of_date) if config.as_of_date else None
        # Incremental: only the persons whose rows changed are read and computed again, digested where
        # the release is stored (`journeys_from`); the whole release is read only when every row must be.
        folder = journeys_state_folder(linkage.root)
        state = load_state(folder, variant) if linkage.mode != "full" else None
        selects = {(s, t): read[input_name(s, t)].select_sql() for s, t in PERSON_JOURNEYS.inputs}
        with warehouse_cursor(warehouse.database) as conn:
            frame, new_state, computed = journeys_from(
                conn, selects, lambda: {(s, t): read[input_name(s, t)].to_polars() for s, t in PERSON_JOURNEYS.inputs},
                as_of=as_of, state=state)
            unlinked = unlinked_counts(conn, selects)
        criminal = frame.filter(pl.col("criminal_cases") > 0)
        yield from _gates(journeys_key, PERSON_JOURNEYS, frame)
        if state is None or not new_state.equals(state):
            save_state(folder, variant, new_state)  # the gates passed: these rows are the ones stored
        yield Output(_as_change(context, frame, new_state, state), metadata={
            FINGERPRINT: fingerprint,
            "persons_computed": computed,
            "persons_kept": frame.height - computed,
            "release_variant": variant + (" (SYNTHETIC)" if variant == SYNTHETIC else ""),
            "people": frame.height,
            "people_with_criminal_case": criminal.height,
            "as_of_date": str(frame["as_of_date"].first()) if frame.height else "n/a",
            "as_of_source": "configured" if as_of else "latest contact date in the release",
            "unlinked_rows": MetadataValue.json(unlinked),
            "returned_within_1y_known": int(frame["returned_within_1y"].is_not_null().sum()),
            "catalogue": MetadataValue.md(PERSON_JOURNEYS.catalogue_markdown()),
        })

    @asset(
        key=profile_key,
        ins={"journeys": AssetIn(key=journeys_key)},
        group_name=derived_group(variant),
        metadata={**stored, "dagster/column_schema": _column_schema(REPEAT_OFFENDING_PROFILE)},
        kinds={"polars", "duckdb"},
        description=f"{REPEAT_OFFENDING_PROFILE.description} ({_label(variant)}; report under "
        f"data/reports/repeat_offending_{variant}.html.)",
        check_specs=_check_specs(profile_key, REPEAT_OFFENDING_PROFILE),
    )
    def _repeat_offending_profile(context: AssetExecutionContext, linkage: LinkageSettings, warehouse: Warehouse,
                                  journeys: pl.DataFrame):
        fingerprint = inputs_fingerprint({"journeys": _stored(warehouse, variant, PERSON_JOURNEYS.name)},
                                         settings=variant)
        if (kept := kept_if_unchanged(context, fingerprint, linkage.mode)) is not None:
            yield from kept  # journeys as they were: the profile, and its report, as stored
            return
        profile = profile_from_journeys(journeys)
        yield from _gates(profile_key, REPEAT_OFFENDING_PROFILE, profile)
        as_of = journeys["as_of_date"].first() if journeys.height else None
        report = profile_report(profile, variant=variant, as_of=as_of, tables=DERIVED_TABLES,
                                extra_facts={"People in the release": f"{journeys.height:,}"})
        paths = report.write(linkage.root / "reports")
        yield Output(profile, metadata={
            FINGERPRINT: fingerprint,
            "release_variant": variant + (" (SYNTHETIC)" if variant == SYNTHETIC else ""),
            "summary": MetadataValue.md(summary_markdown(profile, variant, as_of)),
            "report": MetadataValue.url(file_url(paths["html"], linkage.root)),
            "report_markdown": MetadataValue.path(str(paths["markdown"])),
            "groups": profile.height,
            "suppressed_groups": int(profile["suppressed"].sum()),
            "catalogue": MetadataValue.md(REPEAT_OFFENDING_PROFILE.catalogue_markdown()),
        })

    @asset(
        key=catalogue_key(variant, DERIVED),
        ins={t.name: AssetIn(key=derived_key(variant, t.name)) for t in DERIVED_TABLES},
        group_name=derived_group(variant),
        metadata={"schema": f"catalogue_{variant}"},
        kinds={"polars", "html"},
        description=f"Data catalogue of the derived tables ({_label(variant)}), generated like every dataset's: "
        f"each variable's type, description, % missing, distinct values; under data/catalogues/{variant}/.",
    )
    def _derived_catalogue(context: AssetExecutionContext, linkage: LinkageSettings, warehouse: Warehouse,
                           **tables: pl.DataFrame):
        fingerprint = inputs_fingerprint({t.name: _stored(warehouse, variant, t.name) for t in DERIVED_TABLES},
                                         settings=variant)
        if (kept := kept_if_unchanged(context, fingerprint, linkage.mode)) is not None:
            yield from kept  # its pages as they were written from these tables
            return
        specs = {t.name: t.as_release_table() for t in DERIVED_TABLES}
        catalogue = build_catalogue(DERIVED, tables, specs, synthetic=variant == SYNTHETIC)
        paths = catalogue.write(catalogue_folder(linkage.root, variant))
        yield Output(catalogue.frame, metadata={
            FINGERPRINT: fingerprint,
            "catalogue_html": MetadataValue.url(file_url(paths["html"], linkage.root)),
            "catalogue_markdown": MetadataValue.path(str(paths["markdown"].resolve())),
            "variables": catalogue.frame.height,
            "preview": MetadataValue.md(catalogue.markdown[:8000]),
        })

    return [_person_journeys, _repeat_offending_profile, _derived_catalogue]


def _as_change(context, frame: pl.DataFrame, new_state: pl.DataFrame, state: pl.DataFrame | None):
    """The journeys as the change to the stored table (`ChangedRows`: the IO manager deletes, updates
    and appends only those rows, validating only the rows written, and rewrites the whole table from
    `frame` should the stored one not be what was last validated or the result differ from `frame`);
    the whole frame when every row may have changed."""
    change = journeys_change(frame, new_state, state)
    validated = latest_metadata(context.instance, [context.asset_key])[context.asset_key].get(VALIDATED_CONTENT)
    if change is None or validated is None:
        return frame
    deletes, updates, inserts = change
    stored_last = state[PERSON].max() if state is not None and state.height else None
    return ChangedRows(key=(PERSON,), deletes=deletes, updates=updates, inserts=inserts, expected=frame, rewrite=frame,
                       validated_before=getattr(validated, "value", validated),
                       # appended rows keep the table in person order only when they sort after the rest
                       appendable=inserts.is_empty() or stored_last is None or inserts[PERSON].min() > stored_last)


def _release_fingerprint(context, warehouse, variant: str, as_of_date: str) -> str:
    """The fingerprint of the release tables the journeys read (whole tables: each write of one records
    its fingerprint, and this run's contract check read each: `unchanged.known_fingerprints`, so none
    is hashed again here)."""
    whole = {table_key(variant, s, t): StoredTable(warehouse.database, f"{variant}_{s}", t) for s, t in COLUMNS_READ}
    return inputs_fingerprint({input_name(*k.path[1:]): t for k, t in whole.items()}, settings=(variant, as_of_date),
                              memo=known_fingerprints(context, whole))


def journeys_state_folder(root) -> Path:
    """Where `derived/<variant>/person_journeys` keeps its per-person state between runs."""
    return Path(root) / DERIVED / "state"


def _stored(warehouse, variant: str, name: str) -> StoredTable:
    """Where the IO manager stores `derived/<variant>/<name>` (schema `derived_<variant>`)."""
    return StoredTable(warehouse.database, f"{DERIVED}_{variant}", name)


def required_release_keys(variant: str) -> list[AssetKey]:
    return [table_key(variant, s, t) for s, t in PERSON_JOURNEYS.inputs]


def derived_assets(variants: Sequence[str] = ("deidentified",)) -> list[AssetsDefinition]:
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown release variant(s) {sorted(unknown)}; expected some of {VARIANTS}")
    return [a for variant in variants for a in build_derived_assets(variant)]


def available_variants(upstream: Iterable[AssetsDefinition]) -> tuple[str, ...]:
    """Variants whose every release table the derived assets read is among `upstream`'s assets."""
    keys = {key for definition in upstream for key in definition.keys}
    return tuple(v for v in VARIANTS if all(k in keys for k in required_release_keys(v)))


def derived_assets_for(upstream: Iterable[AssetsDefinition]) -> list[AssetsDefinition]:
    """Derived assets for every release variant defined in `upstream` (synthetic once it exists)."""
    return derived_assets(available_variants(upstream))
