"""Train a Splink model (unsupervised) and describe it.

    spec = model_spec_for_records(records)             # settings.py
    db_api = make_db_api()                             # backend.py
    model = train_model(records, spec, db_api)         # -> TrainedModel (holds the linker)
    model.settings      # trained Splink JSON (dict), loadable with Linker(sdf, settings)
    model.version       # short hash, stable under float noise
    model.summary       # per comparison level: m, u, match weight (Dagster metadata)
    save_charts(model.linker, out_dir)                 # offline HTML (inline JS)

Training follows the issue: the prior from deterministic rules (with an assumed recall),
u by seeded random sampling, m by EM over at least two blocking rules, term-frequency
adjustments on names, dob, postcode and identifiers (declared in the settings).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:  # Splink is imported where a linker is made (linkage/settings.py)
    from splink import Linker

from datafirst_assets.linkage.backend import sql_dialect
from datafirst_assets.linkage.settings import (
    SOURCE_DATASET,
    UNIQUE_ID,
    FULL_NAME,
    LinkageConfigError,
    ModelSpec,
    full_name_frequencies,
    uses_full_name,
    with_full_name,
    render_model,
    render_spec,
    rule_columns,
    settings_dialect,
)

Progress = Callable[[str], None] | None

#: Splink logs a lot at INFO and multi-line warnings (e.g. "level not observed") at
#: WARNING; our callers get stage messages through ``progress`` and untrained levels
#: show up in the model summary (m = null) instead.
SPLINK_LOG_LEVEL = logging.ERROR


@dataclass
class TrainingConfig:
    """Knobs for :func:`train_model` (defaults suit 1k-3M records)."""

    u_max_pairs: float = 1e7  # random pairs sampled for u
    seed: int = 42  # seeds u sampling (reproducible models)
    # cap pairs per EM session (deterministic sample) ... 2e6 pairs give m as stable as 2e7 did
    # at a tenth of the time (an EM session blocked on dob took 21 s at 1M records)
    em_max_pairs: float | None = 2e6
    em_sample_min_records: int = 200_000  # ... applied only from this many records up
    em_rules: Sequence[str] | None = None  # override spec.em_blocking_rules
    deterministic_recall: float | None = None  # override spec.deterministic_recall
    m_floor: float | None = 1e-3  # smallest m per level after EM (None: leave EM's values)
    # u sampling passes (Splink's default 10, stopping early once every level has been seen
    # often enough); 1 is one pass, cheaper where each query has a fixed cost (Spark, small data).
    # None: one pass up to U_ONE_PASS_MAX_PAIRS sampled pairs, Splink's default above (u_chunks_for)
    u_num_chunks: int | None = None
    # where the prior rests on where people live (sparse dates of birth), m of postcode and address
    # from pairs sharing a rare full name rather than from EM (estimate_moving_m)
    moving_m: bool = True


def u_pairs_for(records: int) -> float:
    """Random pairs to sample for u: enough for stable u on rare agreement levels, without
    paying 1e7 on small data. The floor of 1e5 (it was 3e5) took a third of `make demo`'s
    training time off (u is most of it: Splink compares every sampled pair on every level) with
    every dataset's measured B-cubed F1 the same or higher (levels never seen in the sample are
    bounded by bound_unobserved_u)."""
    return float(min(1e7, max(1e5, 10 * records)))


# Up to this many sampled pairs, u is estimated in one pass. Each of Splink's passes is a query
# with a fixed cost (~50 ms here: the sample, the comparison vectors, the counts), which at demo
# size was two thirds of u's time; the early stop seldom comes before the last pass anyway (a
# rare level, such as an exact date of birth, is seen fewer than 100 times in a small sample).
U_ONE_PASS_MAX_PAIRS = 1e6


def u_chunks_for(config: TrainingConfig) -> int | None:
    """Splink's `num_chunks` for u: the config's, else one pass for a small sample (None: Splink's default)."""
    if config.u_num_chunks:
        return config.u_num_chunks
    return 1 if config.u_max_pairs <= U_ONE_PASS_MAX_PAIRS else None


@dataclass
class TrainedModel:
    settings: dict[str, Any]  # trained Splink model JSON
    spec: ModelSpec
    version: str
    summary: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    linker: Linker | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """JSON document to store: Splink model + training plan + version."""
        return {"version": self.version, "splink_model": self.settings, "spec": self.spec.as_dict()}

    @staticmethod
    def from_json(doc: dict[str, Any]) -> TrainedModel:
        spec = ModelSpec(**{**doc["spec"], "fields": tuple(doc["spec"]["fields"]),
                            "extras": tuple(doc["spec"]["extras"]),
                            "deterministic_rules": tuple(doc["spec"]["deterministic_rules"]),
                            "em_blocking_rules": tuple(doc["spec"]["em_blocking_rules"]),
                            "prediction_rules": tuple(doc["spec"].get("prediction_rules") or ())})
        settings = doc["splink_model"]
        return TrainedModel(settings=settings, spec=spec, version=doc.get("version") or model_version(settings),
                            summary=model_summary(settings))


# ----------------------------------------------------------------------- registration


def _frames(records: pl.DataFrame | Sequence[pl.DataFrame]) -> list[pl.DataFrame]:
    return [records] if isinstance(records, pl.DataFrame) else list(records)


def aligned_frames(records: pl.DataFrame | Sequence[pl.DataFrame], spec: ModelSpec | None = None) -> list[pl.DataFrame]:
    """The frames Splink will see: only the columns the model reads, and, when linking
    several frames, the same columns in the same order in each (a field one source
    lacks becomes a typed null column there; Splink requires identical columns)."""
    frames = _frames(records)
    if spec is not None:
        frames = [f.select([c for c in spec.columns if c in f.columns]) for f in frames]
        if uses_full_name(spec.settings):
            frames = [with_full_name(f) for f in frames]
    if len(frames) > 1:
        dtypes: dict[str, pl.DataType] = {}
        for f in frames:
            for c, t in f.schema.items():
                dtypes.setdefault(c, t)
        order = list(dtypes)
        frames = [f.with_columns([pl.lit(None, dtype=dtypes[c]).alias(c) for c in order if c not in f.columns])
                  .select(order) for f in frames]
    return frames


def register_records(db_api, records: pl.DataFrame | Sequence[pl.DataFrame], spec: ModelSpec | None = None,
                     *, name: str = "person_records", views: bool = False):
    """Register polars frame(s) with the DB API (arrow, no pandas round-trip).

    Only the columns the model reads are registered. Returns one SplinkDataFrame for a
    single frame, a list for several (link_and_dedupe). ``views``: strings handed over as arrow
    string views, polars' own layout (no copy of every string; ~0.3 CPU s for the 850,000
    variants of a 300,000-people cross-justice lookup), for a linker that only scores: the
    values are the same, but training samples rows and is kept on the layout it was tuned with.
    """
    frames = aligned_frames(records, spec)
    out = []
    for i, df in enumerate(frames):
        tname = name if len(frames) == 1 else f"{name}_{i}"
        arrow = df.to_arrow(compat_level=pl.CompatLevel.newest()) if views else df.to_arrow()
        out.append(db_api.register(arrow, table_name=f"__df_{tname}_{secrets.token_hex(4)}",
                                   dataset_display_name=tname))
    return out[0] if isinstance(records, pl.DataFrame) else out


def settings_for_backend(db_api, settings: dict[str, Any], spec: ModelSpec | None = None) -> dict[str, Any]:
    """``settings`` (untrained or trained JSON) in the SQL dialect of ``db_api``: as they are
    when the dialects agree, else rebuilt from ``spec`` with the trained values carried
    across (a DuckDB-trained model does not run on Spark as it stands)."""
    dialect = sql_dialect(db_api)
    if settings_dialect(settings) == dialect:
        return settings
    if spec is None:
        raise LinkageConfigError(
            f"the model was built for {settings_dialect(settings)!r} and the backend speaks {dialect!r}: "
            "pass its ModelSpec so the settings can be rendered for this backend")
    return render_model(settings, spec, dialect)


def make_linker(db_api, records: pl.DataFrame | Sequence[pl.DataFrame], settings: dict[str, Any],
                spec: ModelSpec | None = None, *, views: bool = False) -> Linker:
    """A Linker over registered ``records`` with ``settings`` (untrained or trained JSON),
    rendered for the backend's SQL dialect when they were built for another (``views``: as
    ``register_records``')."""
    settings = settings_for_backend(db_api, settings, spec)
    sdf = register_records(db_api, records, spec, views=views)
    settings = json.loads(json.dumps(settings))  # Splink mutates/keeps references
    from splink import Linker  # not at import: loading the code location must not pay for Splink

    from datafirst_assets.linkage.splink_memo import install

    install()  # each Linker validates every level's SQL: parsed once per distinct text (splink_memo.py)

    # Splink's settings validation only logs (at WARNING, below SPLINK_LOG_LEVEL, so never shown) columns
    # the settings name that the records lack; it parsed every rule and level with sqlglot on each
    # Linker, ~90 ms each, three or more per dataset per run. Our settings are built from the records'
    # own columns, and test_linkage_settings runs the validation on every field subset instead.
    linker = Linker(sdf, settings, log_level=SPLINK_LOG_LEVEL, validate_settings=False)
    if uses_full_name(settings):  # the full name's frequency counted by place, not by record
        lookup = db_api.register(full_name_frequencies(_frames(records)).to_arrow(),
                                 table_name=f"__full_name_tf_{secrets.token_hex(4)}")
        linker.table_management.register_term_frequency_lookup(lookup, FULL_NAME)
    return linker


# ---------------------------------------------------------------------------- training

#: Tables an EM session leaves in the database: its blocked pairs, their comparison vectors
#: and the agreement-pattern counts. Nothing reads them again, yet Splink keeps them (with two
#: sessions at 1M records about 0.5 GB, held through prediction and clustering).
EM_LEFTOVERS = ("__splink__blocked_id_pairs_", "__splink__df_comparison_vectors_",
                "__splink__agreement_pattern_counts_")


def splink_tables(db_api) -> set[str]:
    """Splink's tables in the DuckDB schema it writes to (empty on other backends, whose
    intermediate tables are their own checkpoint files)."""
    if sql_dialect(db_api) != "duckdb":
        return set()
    rows = db_api._con.execute(
        "select table_name from duckdb_tables() where database_name = current_database()"
        " and schema_name = current_schema() and starts_with(table_name, '__splink__')").fetchall()
    return {name for (name,) in rows}


def drop_em_leftovers(db_api, before: set[str]) -> list[str]:
    """Drop the EM leftovers created since ``before`` (the tables listed then); returns their names."""
    dropped = sorted(name for name in splink_tables(db_api) - before if name.startswith(EM_LEFTOVERS))
    for name in dropped:  # Splink's own, but a frame made from a name does not know that
        db_api.table_to_splink_dataframe(name, name).drop_table_from_database_and_remove_from_cache(
            force_non_splink_table=True)
    return dropped



def train_model(
    records: pl.DataFrame | Sequence[pl.DataFrame],
    spec: ModelSpec,
    db_api,
    config: TrainingConfig | None = None,
    *,
    progress: Progress = None,
) -> TrainedModel:
    """Train m, u and the prior for ``spec`` on ``records``; returns the trained model
    (with ``.linker`` ready for prediction on the same records)."""
    cfg = config or TrainingConfig()
    say = progress or (lambda _m: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    spec = render_spec(spec, sql_dialect(db_api))  # rules and comparisons in the backend's SQL
    linker = make_linker(db_api, records, spec.settings, spec)
    timings["register"] = time.perf_counter() - t0
    n = sum(f.height for f in _frames(records))

    t = time.perf_counter()
    say(f"estimating prior from {len(spec.deterministic_rules)} deterministic rule(s)")
    recall = cfg.deterministic_recall or spec.deterministic_recall
    try:
        linker.training.estimate_probability_two_random_records_match(
            list(spec.deterministic_rules), recall=recall)
    except ValueError:
        # more deterministic matches than the assumed recall allows: use the max recall
        linker.training.estimate_probability_two_random_records_match(list(spec.deterministic_rules), recall=1.0)
    _guard_prior(linker, n)
    timings["prior"] = time.perf_counter() - t

    t = time.perf_counter()
    say(f"estimating u from up to {cfg.u_max_pairs:,.0f} random pairs (seed {cfg.seed})")
    chunks = u_chunks_for(cfg)
    linker.training.estimate_u_using_random_sampling(
        max_pairs=cfg.u_max_pairs, seed=cfg.seed, **({"num_chunks": chunks} if chunks else {}))
    bound_unobserved_u(linker, cfg.u_max_pairs)
    timings["u"] = time.perf_counter() - t

    t = time.perf_counter()
    rules = list(cfg.em_rules or spec.em_blocking_rules)
    em_cap = cfg.em_max_pairs if n >= cfg.em_sample_min_records else None
    failed = []
    for i, rule in enumerate(rules, 1):
        say(f"EM session {i}/{len(rules)}: {rule}")
        before = splink_tables(db_api)
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(
                rule, estimate_without_term_frequencies=True, max_pairs=em_cap)
        except ValueError as error:
            # On small data EM can drive an m below Splink's minimum (1e-300) and Splink raises
            # mid-session; the other sessions still estimate those m values.
            failed.append(f"{rule}: {error}")
            say(f"EM session {i} abandoned: {error}")
        finally:
            drop_em_leftovers(db_api, before)
    if len(failed) == len(rules):
        raise ValueError("every EM session failed: " + " | ".join(failed))
    timings["em"] = time.perf_counter() - t
    if cfg.moving_m:
        t = time.perf_counter()
        estimate_moving_m(linker, records, spec, say)
        timings["em"] += time.perf_counter() - t
    if cfg.m_floor:
        regularise_m(linker, cfg.m_floor)
    if not cfg.deterministic_recall:
        t = time.perf_counter()
        _reestimate_prior(linker, spec, n, say)
        timings["prior"] += time.perf_counter() - t

    settings = linker.misc.save_model_to_json()
    return TrainedModel(settings=settings, spec=spec, version=model_version(settings),
                        summary=model_summary(settings), timings=timings, linker=linker)


def recall_from_m(linker: Linker, spec: ModelSpec) -> float | None:
    """Recall of the deterministic rules as the trained model sees it: for each rule, the
    chance that both records of a person carry each of its fields (completeness squared) and
    agree on it exactly (the trained m of the field's exact level); the best rule's.

    The assumed recall (settings ``_FIELD_AGREEMENT``: 0.9 a field) suits systems whose
    people keep their details; where people move and are recorded by initial (civil: a
    third of one person's records agree on forename, surname and postcode, not the 0.59
    assumed) it set the prior at half its value, and every score below the truth."""
    recalls = []
    for rule in spec.deterministic_rules:
        cols = rule_columns(rule)
        agreement = [exact_agreement_m(linker, c) for c in cols]
        if not cols or any(a is None for a in agreement):
            continue
        r = 1.0
        for c, a in zip(cols, agreement):
            r *= spec.completeness.get(c, 1.0) ** 2 * a
        recalls.append(r)
    return max(recalls) if recalls else None


def exact_agreement_m(linker: Linker, column: str) -> float | None:
    """P(two records of one person agree exactly on ``column``), from the trained m of every
    level whose condition includes ``column_l = column_r`` (summed, should a comparison split
    exact agreement over several levels). None when no level says so."""
    equal = f"{column}_l={column}_r"

    def condition(lvl) -> str:
        return "".join(lvl.sql_condition.split()).replace('"', "").replace("`", "")

    # A comparison that leaves a case to another (surname's "both names agree", weighed in forename)
    # has m values among the rest of the pairs only: scaled by the share that rest is.
    elsewhere = {condition(lvl): float(lvl._m_probability) for comp in linker._settings_obj.comparisons
                 for lvl in comp.comparison_levels
                 if not lvl.is_null_level and isinstance(lvl._m_probability, (int, float))}
    total, found = 0.0, False
    for comp in linker._settings_obj.comparisons:
        left_out = sum(elsewhere.get(condition(lvl), 0.0) for lvl in comp.comparison_levels
                       if lvl.is_null_level and condition(lvl) in elsewhere)
        for lvl in comp.comparison_levels:
            if not lvl.is_null_level and equal in condition(lvl) and isinstance(lvl._m_probability, (int, float)):
                total, found = total + (1 - left_out) * float(lvl._m_probability), True
    return total if found else None


#: Fields a person's records stop sharing when the person moves.
MOVING_FIELDS = ("postcode", "address")


def _reestimate_prior(linker: Linker, spec: ModelSpec, n: int, say: Callable[[str], None]) -> None:
    """The prior again, from the deterministic rules with the recall the trained m values
    give (:func:`recall_from_m`) instead of the assumed one, when the rules rest on where people
    live (sparse dates of birth: forename, surname and postcode). Rules on names and date of birth
    keep the assumed recall: it is near the truth there (family: 0.50 trained, 0.51 true), and a
    higher prior on family's top-heavy model only moved the no-label threshold up (recall 0.97)."""
    if not any(set(rule_columns(rule)) & set(MOVING_FIELDS) for rule in spec.deterministic_rules):
        return
    recall = recall_from_m(linker, spec)
    if recall is None:
        return
    recall = float(min(0.95, max(0.05, recall)))
    say(f"prior re-estimated with the trained model's recall of the deterministic rules ({recall:.2f})")
    try:
        linker.training.estimate_probability_two_random_records_match(list(spec.deterministic_rules), recall=recall)
    except ValueError:
        linker.training.estimate_probability_two_random_records_match(list(spec.deterministic_rules), recall=1.0)
    _guard_prior(linker, n)


#: Two records that agree on a forename and a surname are taken as one person's when fewer than
#: this many records would carry that full name by chance (the two names' frequencies multiplied
#: by the number of records) ...
RARE_NAME_EXPECTED_RECORDS = 0.005
#: ... from at most this many such pairs (deterministically the first by record id), and only
#: when there are at least MOVING_M_MIN_PAIRS of them.
MOVING_M_MAX_PAIRS = 200_000
MOVING_M_MIN_PAIRS = 200
#: m of a level none of those pairs showed, before flooring.
UNSEEN_M = 1e-9


def rare_name_pairs(records: pl.DataFrame | Sequence[pl.DataFrame], *,
                    expected: float = RARE_NAME_EXPECTED_RECORDS, max_pairs: int = MOVING_M_MAX_PAIRS
                    ) -> pl.DataFrame:
    """Pairs of records that share a forename (more than an initial) and a surname so rare together
    that different people would seldom share them by chance: ``source_dataset_l, record_id_l,
    source_dataset_r, record_id_r`` (left id < right id), at most ``max_pairs``.

    Rarity is the two names' frequencies multiplied (not the full name's own count: one person's
    several records would make a rare name look common)."""
    frames = [f.select(SOURCE_DATASET, UNIQUE_ID, "forename", "surname") for f in _frames(records)
              if {"forename", "surname"} <= set(f.columns)]
    empty = pl.DataFrame(schema={f"{c}_{s}": pl.String for s in ("l", "r") for c in (SOURCE_DATASET, UNIQUE_ID)})
    if not frames:
        return empty
    named = (pl.concat(frames, how="vertical_relaxed").drop_nulls(["forename", "surname"])
             .filter(pl.col("forename").str.len_chars() > 1)
             .with_columns(pl.col(SOURCE_DATASET).cast(pl.String), pl.col(UNIQUE_ID).cast(pl.String)))
    n = named.height
    if n < 2:
        return empty
    rare = (named.with_columns((pl.len().over("forename") * pl.len().over("surname") / n).alias("_expected"))
            .filter(pl.col("_expected") < expected).select(SOURCE_DATASET, UNIQUE_ID, "forename", "surname"))
    pairs = (rare.join(rare, on=["forename", "surname"], suffix="_r")
             .filter(pl.concat_str(SOURCE_DATASET, UNIQUE_ID) < pl.concat_str(f"{SOURCE_DATASET}_r", f"{UNIQUE_ID}_r"))
             .select(pl.col(SOURCE_DATASET).alias(f"{SOURCE_DATASET}_l"), pl.col(UNIQUE_ID).alias(f"{UNIQUE_ID}_l"),
                     pl.col(f"{SOURCE_DATASET}_r"), pl.col(f"{UNIQUE_ID}_r"))
             .sort(f"{UNIQUE_ID}_l", f"{UNIQUE_ID}_r"))
    return pairs.head(max_pairs)


def estimate_moving_m(linker: Linker, records: pl.DataFrame | Sequence[pl.DataFrame], spec: ModelSpec,
                      say: Callable[[str], None] = lambda _m: None) -> bool:
    """m of the comparisons on where people live (``MOVING_FIELDS``) from pairs sharing a rare
    full name (:func:`rare_name_pairs`, taken as matches), when the prior rests on those fields
    (sparse dates of birth). Other comparisons keep EM's m. Returns whether it ran.

    Why: with dates of birth mostly missing, EM blocked on names can tell one person from another
    who shares the name only by where they live, so it learns that a person never moves (civil at
    hard: m of "postcode differs" 0.001 where the truth is 0.11, of "address differs" 0.001 where it
    is 0.56) and splits everyone who moved. A rare full name says "same person" without looking at
    the address, so its pairs show how often one person's address differs."""
    if not any(set(rule_columns(rule)) & set(MOVING_FIELDS) for rule in spec.deterministic_rules):
        return False
    moving = [c for c in linker._settings_obj.comparisons if c.output_column_name in MOVING_FIELDS]
    pairs = rare_name_pairs(records)
    if not moving or pairs.height < MOVING_M_MIN_PAIRS:
        return False
    kept = {(c.output_column_name, i): lvl._m_probability
            for c in linker._settings_obj.comparisons if c.output_column_name not in MOVING_FIELDS
            for i, lvl in enumerate(c.comparison_levels)}
    say(f"m of {', '.join(c.output_column_name for c in moving)} from {pairs.height:,} pairs sharing a rare full name")
    table = linker._db_api.register(pairs.to_arrow(), table_name=f"__rare_name_pairs_{secrets.token_hex(4)}")
    try:
        linker.training.estimate_m_from_pairwise_labels(table)
    finally:
        table.drop_table_from_database_and_remove_from_cache(force_non_splink_table=True)
    for c in linker._settings_obj.comparisons:
        for i, lvl in enumerate(c.comparison_levels):
            if c.output_column_name not in MOVING_FIELDS:
                if isinstance(kept[(c.output_column_name, i)], (int, float)):
                    lvl.m_probability = kept[(c.output_column_name, i)]
            elif not lvl.is_null_level:
                # Splink takes the median of every estimate so far (EM's sessions and this one):
                # EM's are the ones known to be wrong here, so this estimate replaces them.
                m = lvl._trained_m_probabilities[-1]["probability"]
                # a level no pair showed: as good as never (regularise_m floors it)
                lvl.m_probability = m if isinstance(m, (int, float)) and m > 0 else UNSEEN_M
    return True


def _guard_prior(linker: Linker, n: int) -> None:
    """Keep the prior inside (1/n^2, 0.5): zero deterministic matches would give 0."""
    s = linker._settings_obj
    p = s._probability_two_random_records_match
    lo = 1.0 / max(n * n, 4)
    if not (p and lo <= p <= 0.5):
        s._probability_two_random_records_match = min(max(p or lo, lo), 0.5)


def bound_unobserved_u(linker: Linker, sampled_pairs: float) -> list[str]:
    """Give u to every level that random sampling never saw (e.g. PNCs "within 2 edits").

    Such a level has no u, so Splink gives it no match weight: the model page showed blank m/u
    and a pair at that level scored NULL. Fewer than one in `sampled_pairs` random pairs is at the
    level, so u is set to that bound (1 / sampled pairs). Returns the levels set.
    """
    bound = 1.0 / max(float(sampled_pairs), 1.0)
    changed = []
    for comp in linker._settings_obj.comparisons:
        for lvl in comp.comparison_levels:
            if not lvl.is_null_level and not isinstance(lvl._u_probability, (int, float)):
                lvl.u_probability = bound
                changed.append(f"{comp.output_column_name}: {lvl.label_for_charts}")
    return changed


def regularise_m(linker: Linker, floor: float = 1e-3) -> list[str]:
    """Floor every level's m at ``floor`` and renormalise within the comparison.

    EM drives m to ~0 for levels it (almost) never sees among matches in the training
    blocks, which turns e.g. "dates of birth differ" into a -30 bit veto that no other
    evidence can overcome; one keying error should not split a person. Returns the
    levels changed.
    """
    changed = []
    for comp in linker._settings_obj.comparisons:
        levels = [lvl for lvl in comp.comparison_levels if not lvl.is_null_level]
        ms = []
        for lvl in levels:
            m = lvl._m_probability
            ms.append(m if isinstance(m, (int, float)) else None)
        if all(m is None for m in ms):
            continue
        floored = [max(m if m is not None else 0.0, floor) for m in ms]
        total = sum(floored)
        for lvl, old, new in zip(levels, ms, floored):
            new = new / total
            if old is None or abs(new - old) > 1e-12:
                lvl.m_probability = new
                if old is None or old < floor:
                    changed.append(f"{comp.output_column_name}: {lvl.label_for_charts}")
    return changed


# ---------------------------------------------------------------------- versioning


def _round_sig(x: float, sig: int) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, sig - 1 - int(math.floor(math.log10(abs(x)))))


def _canonical(obj: Any, sig: int) -> Any:
    if isinstance(obj, dict):
        return {k: _canonical(v, sig) for k, v in sorted(obj.items()) if k != "linker_uid"}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v, sig) for v in obj]
    if isinstance(obj, float):
        return _round_sig(obj, sig)
    return obj


def model_version(settings_json: dict[str, Any] | str, *, sig: int = 3, length: int = 12) -> str:
    """Short hash of a (trained) settings JSON with every float rounded to ``sig``
    significant figures and the random ``linker_uid`` dropped, so re-training that only
    moves parameters in the noise keeps the version."""
    if isinstance(settings_json, str):
        settings_json = json.loads(settings_json)
    text = json.dumps(_canonical(settings_json, sig), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# ------------------------------------------------------------------------- summaries


def model_summary(settings_json: dict[str, Any]) -> dict[str, Any]:
    """Readable, JSON-serialisable summary: prior, and per comparison level m, u, weight."""
    prior = settings_json.get("probability_two_random_records_match")
    comparisons = []
    for comp in settings_json.get("comparisons", []):
        levels = []
        for lvl in comp.get("comparison_levels", []):
            if lvl.get("is_null_level"):
                continue
            m, u = lvl.get("m_probability"), lvl.get("u_probability")
            weight = math.log2(m / u) if (m and u) else None
            levels.append({
                "level": lvl.get("label_for_charts") or lvl.get("sql_condition"),
                "m": _r(m), "u": _r(u), "match_weight": _r(weight),
                "tf_adjustment": lvl.get("tf_adjustment_column"),
            })
        comparisons.append({"comparison": comp.get("output_column_name"), "levels": levels})
    return {
        "probability_two_random_records_match": _r(prior),
        "prior_match_weight": _r(math.log2(prior / (1 - prior))) if prior and prior < 1 else None,
        "link_type": settings_json.get("link_type"),
        "blocking_rules": [b["blocking_rule"] if isinstance(b, dict) else b
                           for b in settings_json.get("blocking_rules_to_generate_predictions", [])],
        "comparisons": comparisons,
    }


def _r(x: float | None, sig: int = 4) -> float | None:
    return None if x is None else _round_sig(float(x), sig)


def summary_table(summary: dict[str, Any]) -> pl.DataFrame:
    """The summary as a flat table (comparison, level, m, u, match_weight) for markdown."""
    rows = [{"comparison": c["comparison"], **lvl} for c in summary["comparisons"] for lvl in c["levels"]]
    return pl.DataFrame(rows, schema={"comparison": pl.String, "level": pl.String, "m": pl.Float64,
                                      "u": pl.Float64, "match_weight": pl.Float64,
                                      "tf_adjustment": pl.String})


# ---------------------------------------------------------------------------- charts


def save_charts(linker: Linker, out_dir: str | Path, *, prefix: str = "") -> dict[str, Path]:
    """Match-weights and m/u charts as self-contained HTML (inline JS: works offline).

    Splink 5 renders HTML itself (altair is optional and not needed here). A chart that
    fails to render is skipped and reported as an ``*_error`` entry, never fatal.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Any] = {}
    for key, make in (("match_weights_chart", linker.visualisations.match_weights_chart),
                      ("m_u_parameters_chart", linker.visualisations.m_u_parameters_chart)):
        path = out / f"{prefix}{key}.html"
        try:
            make().save(str(path), inline=True)
            paths[key] = path
        except Exception as exc:  # noqa: BLE001 - charts are a nicety, never fatal
            paths[f"{key}_error"] = f"{type(exc).__name__}: {exc}"
    return paths


def load_model(path: str | Path) -> TrainedModel:
    return TrainedModel.from_json(json.loads(Path(path).read_text()))


def model_row(model: TrainedModel, records: int, trained_at: str | None = None) -> pl.DataFrame:
    """What the model asset stores: one row with the model's JSON and how many records it was trained on."""
    return pl.DataFrame({
        "version": [model.version],
        "trained_at": [trained_at or datetime.now(timezone.utc).isoformat(timespec="seconds")],
        "records": [records],
        "model_json": [json.dumps(model.to_json())],
    })


def stored_model(row: pl.DataFrame | None) -> tuple[dict[str, Any] | None, int | None]:
    """(model JSON, records it was trained on) of a stored model row; (None, None) when none is stored."""
    if row is None or row.height != 1:
        return None, None
    return json.loads(row["model_json"][0]), int(row["records"][0])


def save_model(model: TrainedModel, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(model.to_json(), indent=2))
    return p


__all__ = [
    "TrainingConfig", "TrainedModel", "register_records", "make_linker", "train_model",
    "model_version", "model_summary", "summary_table", "save_charts", "load_model", "save_model",
    "model_row", "stored_model", "SOURCE_DATASET", "UNIQUE_ID",
]
