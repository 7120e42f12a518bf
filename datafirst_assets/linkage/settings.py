"""Splink settings built from the linkage fields a dataset actually has.

Nothing here is tuned to a particular data generator: comparisons use standard
record-linkage levels (exact / fuzzy / partial agreement), blocking rules are chosen by
which fields are present and usable, and every field that exists contributes evidence.

Input contract (see ``person records`` in the issue): a polars frame with ``record_id``
(unique text), ``source_dataset`` and any subset of :data:`LINKAGE_FIELDS`, standardised
(upper-case names, ``pl.Date`` dob, ``"SW1A 1AA"`` postcodes, M/F sex).

The model is described by a :class:`ModelSpec`: the Splink settings dict (JSON, dialected)
plus the training plan (deterministic rules for the prior, EM blocking rules).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from splink import ColumnExpression


class _LazyModule:
    """A Splink module imported at its first use, not when this module is: loading the code
    location (at the start of every run's process) imports this module for its names and
    constants, and Splink with sqlglot costs ~0.5 s that only the linking steps need."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self._name)
        from datafirst_assets.linkage.splink_memo import install

        install()  # Splink's parsing once per distinct text (at the first use only: then a flag)
        return getattr(module, attr)


splink_api = _LazyModule("splink")
cll = _LazyModule("splink.comparison_level_library")
cl = _LazyModule("splink.comparison_library")
brl = _LazyModule("splink.blocking_rule_library")

UNIQUE_ID = "record_id"
SOURCE_DATASET = "source_dataset"

#: Standardised linkage fields, in the order comparisons are listed.
LINKAGE_FIELDS: tuple[str, ...] = (
    "forename", "middle_names", "surname", "dob", "sex", "postcode", "address", "pnc", "cro",
    "other_id",
)
#: Fields of a party to a case (family, civil), compared within one dataset only: a role means
#: something in its own system (a family CHILD, a civil CLAIMANT), nothing across systems.
CASE_FIELDS: tuple[str, ...] = ("party_role",)
#: Role of a child party: the same person is a child on every case while a minor, and an
#: adult party (applicant, respondent) is almost never the child of another case.
CHILD_ROLE = "CHILD"


#: Assumed agreement rate of a single field between two records of the same person,
#: used only to guess the recall of the deterministic rules that set the prior.
_FIELD_AGREEMENT = 0.9


class LinkageConfigError(ValueError):
    """The records cannot support a linkage model (no usable fields, bad extras...)."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to train a model: Splink settings plus the training plan."""

    settings: dict[str, Any]  # Splink settings dict (dialected, JSON-serialisable)
    fields: tuple[str, ...]  # linkage fields used
    extras: tuple[str, ...]  # extra columns compared exactly (tf-adjusted)
    deterministic_rules: tuple[str, ...]  # SQL, for estimate_probability_two_random_records_match
    deterministic_recall: float
    em_blocking_rules: tuple[str, ...]  # SQL, one EM session each
    link_type: str = "dedupe_only"
    completeness: dict[str, float] = field(default_factory=dict)
    blocking_pairs: dict[str, int] = field(default_factory=dict)  # pairs per prediction rule
    # Prediction rules as dialect-neutral labels (see rule_label), so the settings can be
    # rendered again for another backend's SQL dialect (render_spec).
    prediction_rules: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def columns(self) -> list[str]:
        """Input columns the model reads (unique id, source dataset, fields, extras)."""
        return [UNIQUE_ID, SOURCE_DATASET, *self.fields, *self.extras]


# ----------------------------------------------------------------------------- fields


def field_completeness(records: pl.DataFrame | Sequence[pl.DataFrame], columns: Iterable[str]) -> dict[str, float]:
    """Share of non-null values per column over all records (a frame without the column,
    e.g. a source that never records it, counts as all null)."""
    frames = [records] if isinstance(records, pl.DataFrame) else list(records)
    total = sum(f.height for f in frames)
    out: dict[str, float] = {}
    for c in columns:
        non_null = sum(f.height - f.get_column(c).null_count() for f in frames if c in f.columns)
        out[c] = non_null / total if total else 0.0
    return out


def usable_fields(
    records: pl.DataFrame | Sequence[pl.DataFrame],
    candidates: Iterable[str] = LINKAGE_FIELDS,
    *,
    min_completeness: float = 0.01,
) -> list[str]:
    """Candidate columns that exist, are at least ``min_completeness`` filled and vary.

    An entirely null or constant column carries no evidence (and its m/u cannot be
    estimated), so it is left out of the model. When linking several frames a field
    held by only some of them still counts.
    """
    frames = [records] if isinstance(records, pl.DataFrame) else list(records)
    candidates = list(candidates)
    comp = field_completeness(frames, candidates)
    return [c for c in candidates if comp[c] >= min_completeness and _varies(frames, c)]


def _varies(frames: Sequence[pl.DataFrame], column: str) -> bool:
    """Whether ``column`` holds two different non-null values across ``frames``: each value compared
    with the first (one pass, no hash table: finding the distinct values took a fifth of choosing
    the model's fields and rules at 1M records)."""
    firsts = []
    for frame in frames:
        if column not in frame.columns:
            continue
        values = frame.get_column(column).drop_nulls()
        if values.dtype.is_float():  # NaN is not equal to itself: count distinct values instead
            values = values.unique()
            if values.len() >= 2:
                return True
        if values.is_empty():
            continue
        if (values != values.slice(0, 1)).any():
            return True
        firsts.append(values.slice(0, 1).to_frame(column))
    return len(firsts) >= 2 and pl.concat(firsts, how="vertical_relaxed").get_column(column).n_unique() >= 2


# ----------------------------------------------------------------------- comparisons


def _c(expr: str) -> ColumnExpression:
    return splink_api.ColumnExpression(expr)


#: Derived column (forename and surname) whose frequency weighs a pair agreeing on both names at
#: once, where dates of birth are sparse (see :func:`full_name_frequencies`).
FULL_NAME = "full_name"
_BOTH_NAMES = "forename_l = forename_r AND surname_l = surname_r"


def _name_comparison(col: str, *, swap_with: str | None, middle: bool, swap_counts: bool = True,
                     full_name: bool = False) -> cl.CustomComparison:
    """Forename or surname: exact (tf), Jaro-Winkler bands, swap, middle-name promotion.

    Swapped forename/surname is one piece of evidence, so it is weighed once: in the
    forename comparison (``swap_counts``); the surname comparison treats a swap as a
    neutral (null) level. Counting it in both doubles a weight that is already large,
    and chains every "SMITH REBECCA" to every "REBECCA SMITH" at scale.
    """
    levels: list[Any] = [cll.NullLevel(col)]
    if full_name:
        # Both names agree: weighed once, by how common the whole name is (forename and surname
        # frequencies multiplied undercount names that go together, as in many minority groups),
        # in the forename comparison; the surname comparison calls it neutral.
        both = cll.CustomLevel(_BOTH_NAMES)
        if col == "forename":
            both.configure(tf_adjustment_column=FULL_NAME, tf_adjustment_weight=1.0,
                           disable_tf_exact_match_detection=True,  # the level's own u: weight m / tf
                           label_for_charts="Forename and surname agree (by the full name's frequency)")
        else:
            both.configure(is_null_level=True, label_for_charts="Forename and surname agree (weighed in forename)")
        levels.append(both)
    levels += [
        cll.ExactMatchLevel(col, term_frequency_adjustments=True),
        cll.JaroWinklerLevel(col, 0.92),
        cll.JaroWinklerLevel(col, 0.88),
    ]
    if col == "forename":
        # Civil and family systems often hold only an initial ("J SMITH"): agreement with the
        # other record's first letter is evidence of its own, weaker than a name but far from none.
        levels.append(cll.CustomLevel(
            f"(length({col}_l) = 1 OR length({col}_r) = 1) AND substr({col}_l, 1, 1) = substr({col}_r, 1, 1)",
            label_for_charts=f"{col} is an initial of the other"))
    if swap_with:
        swapped = cll.ColumnsReversedLevel(col, swap_with, symmetrical=True)
        if swap_counts:
            swapped.configure(label_for_charts=f"{col} and {swap_with} swapped")
        else:
            swapped.configure(is_null_level=True,
                              label_for_charts=f"{col} and {swap_with} swapped (weighed in {swap_with})")
        levels.append(swapped)
    if middle:
        levels.append(cll.CustomLevel(
            f"{_starts_word(f'{col}_l', 'middle_names_r')} OR {_starts_word(f'{col}_r', 'middle_names_l')}",
            label_for_charts=f"{col} is the other's first middle name",
        ))
    levels += [cll.JaroWinklerLevel(col, 0.7), cll.ElseLevel()]
    return cl.CustomComparison(levels, output_column_name=col, comparison_description=f"{col} name")


def _starts_word(word: str, text: str) -> str:
    """SQL: ``text`` is ``word`` or starts with ``word`` followed by a space (portable)."""
    return f"({text} = {word} OR substr({text}, 1, length({word}) + 1) = concat({word}, ' '))"


def _first_word(col: str) -> str:
    return f"substr(concat({col}, ' '), 1, instr(concat({col}, ' '), ' '))"


def _middle_names_comparison() -> cl.CustomComparison:
    return cl.CustomComparison(
        [
            cll.NullLevel("middle_names"),
            cll.ExactMatchLevel("middle_names"),
            cll.CustomLevel(f"{_first_word('middle_names_l')} = {_first_word('middle_names_r')}",
                            label_for_charts="First middle name matches"),
            cll.JaroWinklerLevel("middle_names", 0.88),
            cll.CustomLevel("substr(middle_names_l, 1, 1) = substr(middle_names_r, 1, 1)",
                            label_for_charts="Middle initial matches"),
            cll.ElseLevel(),
        ],
        output_column_name="middle_names",
        comparison_description="middle names",
    )


def _dob_comparison() -> cl.CustomComparison:
    # Date parts with year()/month()/day() (DuckDB and Spark SQL alike): far cheaper than
    # an edit distance on the date as text, and closer to how dates go wrong.
    y = "year(dob_l) = year(dob_r)"
    two_of_three = (
        f"((CASE WHEN {y} THEN 1 ELSE 0 END)"
        " + (CASE WHEN month(dob_l) = month(dob_r) THEN 1 ELSE 0 END)"
        " + (CASE WHEN day(dob_l) = day(dob_r) THEN 1 ELSE 0 END)) >= 2"
    )
    swap = f"({y} AND month(dob_l) = day(dob_r) AND day(dob_l) = month(dob_r))"
    return cl.CustomComparison(
        [
            cll.NullLevel("dob"),
            # tf: frequent values (placeholders such as 1 January) carry less evidence
            cll.ExactMatchLevel("dob", term_frequency_adjustments=True),
            cll.CustomLevel(f"{two_of_three} OR {swap}",
                            label_for_charts="Two of day/month/year agree, or day and month swapped"),
            cll.CustomLevel(y, label_for_charts="Same year of birth"),
            cll.AbsoluteDateDifferenceLevel("dob", input_is_string=False, threshold=10, metric="year")
            .configure(label_for_charts="Within 10 years"),
            cll.ElseLevel(),
        ],
        output_column_name="dob",
        comparison_description="date of birth",
    )


def _pc_part(side: str, part: str) -> str:
    """Postcode part by plain substr (staged postcodes are "AB1 2CD"): portable SQL and
    several times cheaper than a regex per pair."""
    pc = f"postcode_{side}"
    if part == "sector":  # "AB1 2"
        return f"substr({pc}, 1, length({pc}) - 2)"
    if part == "district":  # "AB1"
        return f"substr({pc}, 1, length({pc}) - 4)"
    # area: the leading letters, "AB" or "B"
    return f"(CASE WHEN substr({pc}, 2, 1) BETWEEN 'A' AND 'Z' THEN substr({pc}, 1, 2) ELSE substr({pc}, 1, 1) END)"


def _postcode_comparison() -> cl.CustomComparison:
    def same(part: str) -> str:
        return f"{_pc_part('l', part)} = {_pc_part('r', part)}"

    return cl.CustomComparison(
        [
            cll.NullLevel("postcode"),
            cll.ExactMatchLevel("postcode", term_frequency_adjustments=True),
            cll.CustomLevel(same("sector"), label_for_charts="Same postcode sector"),
            cll.CustomLevel(same("district"), label_for_charts="Same postcode district"),
            cll.CustomLevel(same("area"), label_for_charts="Same postcode area"),
            cll.ElseLevel(),
        ],
        output_column_name="postcode",
        comparison_description="postcode",
    )


def _identifier_comparison(col: str, *, typo_level: bool) -> cl.CustomComparison:
    """Exact (tf: an id shared by many records, e.g. a junk PNC, is weak evidence)."""
    levels: list[Any] = [cll.NullLevel(col), cll.ExactMatchLevel(col, term_frequency_adjustments=True)]
    if typo_level:
        # Levenshtein <= 2 covers a typo or an adjacent transposition; (Damerau-
        # Levenshtein is ~7x slower in DuckDB for the same purpose)
        levels.append(cll.LevenshteinLevel(col, 2).configure(label_for_charts=f"{col} within 2 edits"))
    levels.append(cll.ElseLevel())
    return cl.CustomComparison(levels, output_column_name=col, comparison_description=col)


def _address_comparison() -> cl.CustomComparison:
    return cl.CustomComparison(
        [
            cll.NullLevel("address"),
            cll.ExactMatchLevel("address", term_frequency_adjustments=True),
            cll.JaroWinklerLevel("address", 0.9),
            cll.JaroWinklerLevel("address", 0.75),
            cll.ElseLevel(),
        ],
        output_column_name="address",
        comparison_description="address",
    )


def _exact_comparison(col: str) -> cl.CustomComparison:
    return cl.CustomComparison(
        [cll.NullLevel(col), cll.ExactMatchLevel(col, term_frequency_adjustments=True), cll.ElseLevel()],
        output_column_name=col,
        comparison_description=f"{col} (exact)",
    )


def _role_comparison() -> cl.CustomComparison:
    """Role in the case: the same role, both adult parties in different roles (an applicant
    here, a respondent there), else (a child against an adult: rarely one person)."""
    return cl.CustomComparison(
        [
            cll.NullLevel("party_role"),
            cll.ExactMatchLevel("party_role"),
            cll.CustomLevel(f"party_role_l <> '{CHILD_ROLE}' AND party_role_r <> '{CHILD_ROLE}'",
                            label_for_charts="Both adult parties, different roles"),
            cll.ElseLevel(),
        ],
        output_column_name="party_role",
        comparison_description="role in the case",
    )


def build_comparisons(fields: Sequence[str], extras: Sequence[str] = (), *, full_name: bool = False
                      ) -> list[cl.CustomComparison]:
    f = set(fields)
    full_name = full_name and {"forename", "surname"} <= f
    comps: list[cl.CustomComparison] = []
    if "forename" in f:
        comps.append(_name_comparison(
            "forename", swap_with="surname" if "surname" in f else None, middle="middle_names" in f,
            full_name=full_name))
    if "middle_names" in f:
        comps.append(_middle_names_comparison())
    if "surname" in f:
        comps.append(_name_comparison(
            "surname", swap_with="forename" if "forename" in f else None, middle=False, swap_counts=False,
            full_name=full_name))
    if "dob" in f:
        comps.append(_dob_comparison())
    if "sex" in f:
        comps.append(cl.CustomComparison(
            [cll.NullLevel("sex"), cll.ExactMatchLevel("sex"), cll.ElseLevel()],
            output_column_name="sex", comparison_description="sex"))
    if "postcode" in f:
        comps.append(_postcode_comparison())
    if "address" in f:
        comps.append(_address_comparison())
    for col in ("pnc", "cro"):
        if col in f:
            comps.append(_identifier_comparison(col, typo_level=True))
    if "other_id" in f:
        comps.append(_identifier_comparison("other_id", typo_level=False))
    if "party_role" in f:
        comps.append(_role_comparison())
    for col in extras:
        comps.append(_exact_comparison(col))
    return comps


# -------------------------------------------------------------------- blocking rules


@dataclass(frozen=True)
class Key:
    """One equi-join key of a blocking rule: a column, or a simple derivation of it.

    Each key has a Splink form (SQL, dialect-neutral) and a polars form, so the size of
    a rule's blocks can be counted on the data before Splink runs.
    """

    col: str
    fn: str = ""  # "" | "initial" | "year" | "district" | "area"

    def splink(self) -> str | ColumnExpression:
        if self.fn == "initial":
            return _c(self.col).substr(1, 1)
        if self.fn == "year":
            return _c(self.col).cast_to_string().substr(1, 4)
        if self.fn == "district":
            return _c(self.col).regex_extract("^[A-Z]{1,2}[0-9][A-Z0-9]?")
        if self.fn == "area":
            return _c(self.col).regex_extract("^[A-Z]{1,2}")
        return self.col

    def polars(self) -> pl.Expr:
        e = pl.col(self.col)
        if self.fn == "initial":
            e = e.cast(pl.String).str.slice(0, 1)
        elif self.fn == "year":
            e = e.dt.year()
        elif self.fn == "district":
            e = e.cast(pl.String).str.extract(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)", 1)
        elif self.fn == "area":
            e = e.cast(pl.String).str.extract(r"^([A-Z]{1,2})", 1)
        return e.alias(f"{self.col}_{self.fn}" if self.fn else self.col)

    def __str__(self) -> str:
        return f"{self.fn}({self.col})" if self.fn else self.col


SWAP_RULE = "l.forename = r.surname AND l.surname = r.forename"


#: A dataset is sparse (family, civil) when fewer than this share of its records carry a date of
#: birth: its people are found by name and where they live, so blocking adds rules on those.
SPARSE_DOB_COMPLETENESS = 0.9


def candidate_blocking_keys(fields: Sequence[str], *, sparse: bool = False) -> list[tuple[Key, ...] | str]:
    """OR-ed blocking rules for prediction, from the fields present (before sizing).

    Each rule is an equi-join on fairly specific keys; together they tolerate an error
    or a gap in any one field (often two): names exact; dob with either initial; surname
    with year of birth or with the forename's initial; each identifier; postcode with either
    initial; swapped names. ``sparse`` data (dates of birth mostly missing, forenames often
    missing or an initial, people moving) adds: surname within the postcode area, the address
    with either initial, and forename with the surname's initial within the postcode area.
    """
    f = set(fields)
    rules: list[tuple[Key, ...] | str] = []

    def add(*keys: Key) -> None:
        if {k.col for k in keys} <= f:
            rules.append(tuple(keys))

    add(Key("forename"), Key("surname"))
    add(Key("dob"), Key("forename", "initial"))
    add(Key("dob"), Key("surname", "initial"))
    add(Key("surname"), Key("dob", "year"))
    # Sparse systems (civil, family) often lack the date of birth and record only an initial or
    # a nickname, and people move: surname with the forename's initial still finds them.
    add(Key("surname"), Key("forename", "initial"))
    add(Key("pnc"))
    add(Key("cro"))
    add(Key("other_id"))
    add(Key("postcode"), Key("surname", "initial"))
    add(Key("postcode"), Key("forename", "initial"))
    if sparse:
        add(Key("surname"), Key("postcode", "area"))
        add(Key("address"), Key("surname", "initial"))
        add(Key("address"), Key("forename", "initial"))
        add(Key("forename"), Key("surname", "initial"), Key("postcode", "area"))
    if {"forename", "surname"} <= f:
        rules.append(SWAP_RULE)
    if not ({"forename", "surname", "dob"} & f):  # no names or dob: use what is left
        add(Key("postcode"))
        add(Key("address"))
    if not rules:
        for c in ("dob", "surname", "forename", "postcode", "address", "sex"):
            if c in f:
                rules.append((Key(c),))
                break
    return rules


#: Keys tried, in order, to split a rule whose blocks are too big.
_REFINEMENTS = (Key("dob", "year"), Key("surname", "initial"), Key("forename", "initial"),
                Key("postcode", "district"), Key("dob"), Key("sex"))


def count_pairs(frame: pl.DataFrame | pl.LazyFrame, rule: tuple[Key, ...] | str) -> int:
    """Pairs a rule generates within ``frame`` (all inputs stacked): sum of C(n, 2) over
    its blocks; rows with a null key never pair."""
    keys = (Key("forename"), Key("surname")) if isinstance(rule, str) else rule
    return BlockingKeyCodes(frame, keys).count_pairs(rule)


class BlockingKeyCodes:
    """Every blocking key of ``frame`` computed once as a 64-bit hash (null where the key is
    null), so that sizing a dozen candidate rules is a dozen integer group-bys, not a dozen
    string group-bys with their derivations (about 3x less CPU at 1M records).

    A rule's blocks are grouped by one hash of its keys' hashes: two different blocks share a
    hash with probability about blocks^2 / 2^65 (1e-8 at a million blocks), and a count is
    only used to size the rules.
    """

    def __init__(self, frame: pl.DataFrame | pl.LazyFrame, keys: Sequence[Key]) -> None:
        present = set(frame.collect_schema().names())
        self.keys = sorted({k for k in keys if k.col in present}, key=str)
        exprs = [pl.when(k.polars().is_not_null()).then(k.polars().hash()).alias(str(k)) for k in self.keys]
        self.codes = frame.lazy().select(exprs).collect() if exprs else pl.DataFrame()

    def count_pairs(self, rule: tuple[Key, ...] | str) -> int:
        if isinstance(rule, str):  # swapped names: n(a, b) * n(b, a) over unordered a != b
            return self._count_swapped()
        names = [str(k) for k in rule]
        block = pl.struct(names).hash() if len(names) > 1 else pl.col(names[0])
        out = (self.codes.lazy().select(names).drop_nulls().group_by(block.alias("block"))
               .agg(pl.len().cast(pl.Int64).alias("n"))
               .select((pl.col("n") * (pl.col("n") - 1) // 2).sum()).collect())
        return int(out.item() or 0)

    def _count_swapped(self) -> int:
        # both names hashed by the same function: a forename equals a surname iff their hashes do
        g = (self.codes.lazy().select(pl.col("forename").alias("a"), pl.col("surname").alias("b")).drop_nulls()
             .group_by("a", "b").agg(pl.len().cast(pl.Int64).alias("n")))
        j = g.join(g, left_on=["a", "b"], right_on=["b", "a"], suffix="_r")
        row = j.select(
            (pl.when(pl.col("a") != pl.col("b")).then(pl.col("n") * pl.col("n_r")).otherwise(
                pl.col("n") * (pl.col("n") - 1))).sum() // 2).collect()
        return int(row.item() or 0)


def fit_blocking_rules(
    records: pl.DataFrame | Sequence[pl.DataFrame],
    fields: Sequence[str],
    *,
    max_pairs_per_rule: int | None = None,
    pairs_per_record: float = 10.0,
    min_budget: int = 2_000_000,
) -> tuple[list[tuple[Key, ...] | str], dict[str, int]]:
    """Size the candidate rules on the data; split any rule over budget.

    The budget per rule is ``max(min_budget, pairs_per_record * n_records)`` unless
    ``max_pairs_per_rule`` is given. An oversized rule (common names, a junk PNC shared
    by thousands of records, a placeholder dob) gets one extra key from a fixed list:
    the first that brings it under budget, else the one that shrinks it most.
    Returns the rules and their pair counts (for metadata).
    """
    frames = [records] if isinstance(records, pl.DataFrame) else list(records)
    cols = sorted(set(fields) & set().union(*[set(f.columns) for f in frames]))
    stacked = pl.concat([f.select([c for c in cols if c in f.columns]) for f in frames], how="diagonal_relaxed")
    n = stacked.height
    budget = max_pairs_per_rule or max(min_budget, int(pairs_per_record * n))
    rules: list[tuple[Key, ...] | str] = []
    counts: dict[str, int] = {}
    sparse = "dob" not in stacked.columns or (n and 1 - stacked["dob"].null_count() / n < SPARSE_DOB_COMPLETENESS)
    candidates = candidate_blocking_keys(fields, sparse=bool(sparse))
    swap_keys = (Key("forename"), Key("surname")) if SWAP_RULE in candidates else ()
    codes = BlockingKeyCodes(stacked, [*swap_keys, *_REFINEMENTS,
                                       *[k for r in candidates if not isinstance(r, str) for k in r]])
    for rule in candidates:
        c = codes.count_pairs(rule)
        if c > budget and not isinstance(rule, str):
            options = []
            for extra in _REFINEMENTS:
                if extra.col not in fields or extra in rule or any(k.col == extra.col and not k.fn for k in rule):
                    continue
                cand = (*rule, extra)
                cc = codes.count_pairs(cand)
                options.append((cc, cand))
                if cc <= budget:
                    break
            if options:
                c, rule = min(options, key=lambda o: o[0]) if options[-1][0] > budget else options[-1]
        if not isinstance(rule, str) and any(set(rule) == set(r) for r in rules if not isinstance(r, str)):
            continue  # refined into a rule already there (dob & initials, from either side): one join, not two
        rules.append(rule)
        counts[rule_label(rule)] = c
    return rules, counts


_SWAP_LABEL = "forename/surname swapped"


def rule_label(rule: tuple[Key, ...] | str) -> str:
    return _SWAP_LABEL if isinstance(rule, str) else " & ".join(str(k) for k in rule)


def parse_rule_label(label: str) -> tuple[Key, ...] | str:
    """Inverse of :func:`rule_label`: ``"dob & initial(forename)"`` -> (Key("dob"), Key("forename", "initial"))."""
    if label == _SWAP_LABEL:
        return SWAP_RULE
    keys = []
    for part in label.split(" & "):
        part = part.strip()
        if part.endswith(")") and "(" in part:
            fn, col = part[:-1].split("(", 1)
            keys.append(Key(col, fn))
        else:
            keys.append(Key(part))
    return tuple(keys)


def to_splink_rule(rule: tuple[Key, ...] | str) -> Any:
    if isinstance(rule, str):
        return brl.CustomRule(rule)
    return splink_api.block_on(*[k.splink() for k in rule])


def prediction_blocking_rules(fields: Sequence[str]) -> list[Any]:
    """Splink blocking rules for prediction from the fields alone (not sized on data)."""
    return [to_splink_rule(r) for r in candidate_blocking_keys(fields)]


#: Below this share of records with a date of birth, the prior is set from names and postcode
#: rather than names and date of birth (too few pairs both carry one to count matches by).
DETERMINISTIC_DOB_COMPLETENESS = 0.5


def sparse_dob_rules(fields: Sequence[str], completeness: dict[str, float] | None = None) -> bool:
    """Too few dates of birth to count matches by (the prior rests on names and postcode)."""
    return (completeness or {}).get("dob", 1.0) < DETERMINISTIC_DOB_COMPLETENESS and "postcode" in set(fields)


def deterministic_rules(fields: Sequence[str], completeness: dict[str, float] | None = None) -> list[Any]:
    """High-precision rules whose matches (with an assumed recall) set the prior."""
    f = set(fields)
    comp = completeness or {}
    rules: list[Any] = []
    sparse_dob = sparse_dob_rules(fields, comp)
    if {"forename", "surname", "dob"} <= f and not sparse_dob:
        rules.append(splink_api.block_on("forename", "surname", "dob"))
    elif {"forename", "surname", "postcode"} <= f:
        rules.append(splink_api.block_on("forename", "surname", "postcode"))
    if {"pnc", "dob"} <= f:
        rules.append(splink_api.block_on("pnc", "dob"))
    if {"cro", "dob"} <= f:
        rules.append(splink_api.block_on("cro", "dob"))
    if not rules:
        # Weakest fallback: everything we have must agree.
        key = [c for c in ("forename", "surname", "dob", "postcode", "pnc", "cro", "other_id") if c in f]
        if key:
            rules.append(splink_api.block_on(*key))
    return rules


def _rule_recall(cols: Sequence[str], completeness: dict[str, float]) -> float:
    r = 1.0
    for c in cols:
        r *= completeness.get(c, 1.0) ** 2 * _FIELD_AGREEMENT
    return r


def em_blocking_rules(fields: Sequence[str], completeness: dict[str, float] | None = None) -> list[Any]:
    """At least two EM sessions such that every comparison is estimated in one of them."""
    f = set(fields)
    comp = completeness or {}
    candidates: list[tuple[tuple[str, ...], Any]] = []
    if {"forename", "surname"} <= f:
        candidates.append((("forename", "surname"), splink_api.block_on("forename", "surname")))
    if "dob" in f:
        candidates.append((("dob",), splink_api.block_on("dob")))
    if "postcode" in f:
        candidates.append((("postcode",), splink_api.block_on("postcode")))
    for c in ("pnc", "cro", "other_id"):
        if c in f:
            candidates.append(((c,), splink_api.block_on(c)))
    if "surname" in f:
        candidates.append((("surname",), splink_api.block_on("surname")))
    if "forename" in f:
        candidates.append((("forename",), splink_api.block_on("forename")))
    if "address" in f:
        candidates.append((("address",), splink_api.block_on("address")))
    # skip rules on fields that are mostly missing (they would train on few pairs)
    good = [c for c in candidates if all(comp.get(x, 1.0) >= 0.3 for x in c[0])] or candidates
    chosen: list[tuple[tuple[str, ...], Any]] = []
    uncovered = set(f)
    for cols, rule in good:
        estimates = f - set(cols)  # a session estimates every comparison not blocked on
        if len(chosen) < 2 or (uncovered & estimates):
            chosen.append((cols, rule))
            uncovered -= estimates
        if len(chosen) >= 2 and not uncovered:
            break
    return [rule for _, rule in chosen]


# -------------------------------------------------------------------------- settings


def build_model_spec(
    fields: Sequence[str],
    *,
    extras: Sequence[str] = (),
    link_type: str = "dedupe_only",
    completeness: dict[str, float] | None = None,
    sql_dialect: str = "duckdb",
    retain_matching_columns: bool = False,
    additional_columns_to_retain: Sequence[str] = (),
    blocking_rules: Sequence[tuple[Key, ...] | str] | None = None,
    blocking_pairs: dict[str, int] | None = None,
) -> ModelSpec:
    """Splink settings plus training plan for the given fields.

    ``fields`` are standardised linkage fields (subset of :data:`LINKAGE_FIELDS`);
    ``extras`` other columns compared exactly with term-frequency adjustment.
    ``link_type`` is "dedupe_only" (one input) or "link_and_dedupe" (several inputs, or
    one input whose ``source_dataset`` column distinguishes them).
    """
    unknown = [x for x in fields if x not in LINKAGE_FIELDS + CASE_FIELDS]
    if unknown:
        raise LinkageConfigError(f"unknown linkage fields {unknown}; expected a subset of {LINKAGE_FIELDS}"
                                 f" and {CASE_FIELDS}")
    clash = [x for x in extras if x in LINKAGE_FIELDS or x in (UNIQUE_ID, SOURCE_DATASET)]
    if clash:
        raise LinkageConfigError(f"extra columns {clash} clash with linkage fields or id columns")
    fields = [x for x in LINKAGE_FIELDS + CASE_FIELDS if x in set(fields)]  # canonical order
    evidence = set(fields) | set(extras)
    if not evidence:
        raise LinkageConfigError("no usable linkage fields: nothing to compare")
    if not (set(fields) - {"sex", *CASE_FIELDS}) and not extras:
        raise LinkageConfigError("sex alone cannot identify people: map at least one other field")
    if link_type not in ("dedupe_only", "link_and_dedupe", "link_only"):
        raise LinkageConfigError(f"unknown link_type {link_type!r}")
    comp = dict(completeness or {})

    det = deterministic_rules(fields, comp)
    det_sql = [_rule_sql(r, sql_dialect) for r in det]
    # recall of the union of rules: at least the best single rule
    det_cols = [_rule_columns(r, sql_dialect) for r in det]
    recall = max((_rule_recall(c, comp) for c in det_cols), default=0.5)
    recall = float(min(0.95, max(0.2, recall)))

    em_rules = em_blocking_rules(fields, comp) if fields else []
    neutral_rules = list(blocking_rules) if blocking_rules is not None else candidate_blocking_keys(fields)
    pred_rules = [to_splink_rule(r) for r in neutral_rules]
    if extras and not pred_rules:
        neutral_rules = [(Key(x),) for x in extras]
        pred_rules = [to_splink_rule(r) for r in neutral_rules]
    if extras and not em_rules:
        em_rules = [splink_api.block_on(x) for x in extras[:2]]

    creator = splink_api.SettingsCreator(
        link_type=link_type,  # type: ignore[arg-type]
        unique_id_column_name=UNIQUE_ID,
        source_dataset_column_name=SOURCE_DATASET,
        comparisons=build_comparisons(fields, extras, full_name=sparse_dob_rules(fields, comp)),
        blocking_rules_to_generate_predictions=pred_rules,
        probability_two_random_records_match=1e-4,
        retain_matching_columns=retain_matching_columns,
        retain_intermediate_calculation_columns=False,
        additional_columns_to_retain=list(additional_columns_to_retain),
        em_convergence=1e-4,
        max_iterations=25,
    )
    settings = creator.create_settings_dict(sql_dialect)
    settings.pop("linker_uid", None)
    settings["sql_dialect"] = sql_dialect  # as Splink's trained JSON says it (see settings_dialect)
    return ModelSpec(
        settings=settings,
        fields=tuple(fields),
        extras=tuple(extras),
        deterministic_rules=tuple(det_sql),
        deterministic_recall=recall,
        em_blocking_rules=tuple(_rule_sql(r, sql_dialect) for r in em_rules),
        link_type=link_type,
        completeness=comp,
        blocking_pairs=dict(blocking_pairs or {}),
        prediction_rules=tuple(rule_label(r) for r in neutral_rules),
    )


def model_spec_for_records(
    records: pl.DataFrame | Sequence[pl.DataFrame],
    *,
    extras: Sequence[str] = (),
    link_type: str | None = None,
    min_completeness: float = 0.01,
    sql_dialect: str = "duckdb",
    max_pairs_per_rule: int | None = None,
    **kwargs: Any,
) -> ModelSpec:
    """:func:`build_model_spec` for the fields ``records`` actually fill.

    ``link_type`` defaults to dedupe_only for one frame and link_and_dedupe for a list.
    """
    frames = [records] if isinstance(records, pl.DataFrame) else list(records)
    if link_type is None:
        link_type = "dedupe_only" if isinstance(records, pl.DataFrame) else "link_and_dedupe"
    fields = usable_fields(frames, LINKAGE_FIELDS, min_completeness=min_completeness)
    if link_type == "dedupe_only":
        fields += usable_fields(frames, CASE_FIELDS, min_completeness=min_completeness)
    bad_extras = [x for x in extras if any(x not in f.columns for f in frames)]
    if bad_extras:
        raise LinkageConfigError(f"extra columns not in the records: {bad_extras}")
    comp = field_completeness(frames, [*fields, *extras])
    rules, counts = fit_blocking_rules(frames, fields, max_pairs_per_rule=max_pairs_per_rule)
    return build_model_spec(fields, extras=extras, link_type=link_type, completeness=comp,
                            sql_dialect=sql_dialect, blocking_rules=rules or None,
                            blocking_pairs=counts, **kwargs)


def uses_full_name(settings: dict[str, Any]) -> bool:
    """Whether a model weighs agreement on both names by the full name's frequency."""
    return any(lvl.get("tf_adjustment_column") == FULL_NAME for comp in settings.get("comparisons", [])
               for lvl in comp.get("comparison_levels", []))


def with_full_name(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with :data:`FULL_NAME` (forename and surname; null unless both are there)."""
    return frame.with_columns(pl.concat_str(["forename", "surname"], separator=" ").alias(FULL_NAME))


def full_name_frequencies(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Each full name's frequency (``full_name, tf_full_name``): the forename's and the surname's
    frequencies multiplied (as the two names' own adjustments would weigh them), or, when the name
    is recorded at more places than that implies, the share of name-and-postcode places that carry
    it besides one (its holder's own). Names that go together (many minority groups' naming
    conventions) are shared by more people than the product says; counting places, not records,
    keeps one person's many records from making a name only they hold look common."""
    keyed = pl.concat([with_full_name(f.select("forename", "surname", pl.col("postcode").cast(pl.String)
                                               if "postcode" in f.columns else pl.lit(None, pl.String).alias("postcode")))
                       for f in frames], how="vertical_relaxed")
    named = keyed.drop_nulls(FULL_NAME)
    # a place is a postcode area: one person's moves mostly stay within it
    area = pl.col("postcode").str.extract(r"^([A-Z]{1,2})", 1).fill_null("")
    places = named.select(FULL_NAME, "forename", "surname", area.alias("postcode")).unique()
    tf = [keyed.drop_nulls(c).group_by(c).len().select(c, (pl.col("len") / pl.col("len").sum()).alias(f"_tf_{c}"))
          for c in ("forename", "surname")]
    return (places.group_by(FULL_NAME, "forename", "surname").len()
            .join(tf[0], on="forename", how="left").join(tf[1], on="surname", how="left")
            .select(FULL_NAME, pl.max_horizontal(pl.col("_tf_forename") * pl.col("_tf_surname"),
                                                 (pl.col("len") - 1) / max(places.height, 1)).alias(f"tf_{FULL_NAME}")))


def _rule_sql(rule: Any, sql_dialect: str) -> str:
    return rule.get_blocking_rule(sql_dialect).blocking_rule_sql


def _rule_columns(rule: Any, sql_dialect: str) -> list[str]:
    return rule_columns(_rule_sql(rule, sql_dialect))


def rule_columns(sql: str) -> list[str]:
    """Linkage fields an equi-join blocking rule's SQL compares (``l."forename" = r."forename"``)."""
    forms = ('l."{c}"', "l.`{c}`", "l.{c} ", "l.{c}=")  # quoted as DuckDB or Spark quote, or bare
    return [c for c in LINKAGE_FIELDS if any(f.format(c=c) in sql for f in forms)]


# ------------------------------------------------------------------ other backends


def settings_dialect(settings: dict[str, Any]) -> str:
    """The SQL dialect a Splink settings dict was rendered for (Splink's trained JSON says
    so at the top; older untrained dicts only per blocking rule)."""
    if settings.get("sql_dialect"):
        return settings["sql_dialect"]
    for rule in settings.get("blocking_rules_to_generate_predictions") or ():
        if isinstance(rule, dict) and rule.get("sql_dialect"):
            return rule["sql_dialect"]
    return "duckdb"


def spec_dialect(spec: ModelSpec) -> str:
    return settings_dialect(spec.settings)


def render_spec(spec: ModelSpec, sql_dialect: str) -> ModelSpec:
    """The same model rebuilt for another SQL dialect (untrained settings).

    SQL is not portable between backends (quoting, function names such as DuckDB's
    ``jaro_winkler_similarity`` vs Spark's ``jaro_winkler``), so the settings are built
    again from the dialect-neutral description; use :func:`render_model` to carry
    trained parameters across.
    """
    if spec_dialect(spec) == sql_dialect:
        return spec
    labels = spec.prediction_rules or tuple(spec.blocking_pairs)  # models saved before prediction_rules
    rules = [parse_rule_label(x) for x in labels] if labels else None
    return build_model_spec(
        spec.fields, extras=spec.extras, link_type=spec.link_type, completeness=spec.completeness,
        sql_dialect=sql_dialect,
        retain_matching_columns=bool(spec.settings.get("retain_matching_columns", False)),
        additional_columns_to_retain=list(spec.settings.get("additional_columns_to_retain") or ()),
        blocking_rules=rules, blocking_pairs=spec.blocking_pairs,
    )


#: Trained values per comparison level, carried across dialects by :func:`render_model`.
_TRAINED_LEVEL_KEYS = ("m_probability", "u_probability")


def render_model(settings_json: dict[str, Any], spec: ModelSpec, sql_dialect: str) -> dict[str, Any]:
    """A trained Splink model JSON for ``sql_dialect``: settings rebuilt by
    :func:`render_spec`, with the prior and every level's m and u copied across.

    Levels are matched by comparison and position and must carry the same labels;
    anything else means the JSON was not built from ``spec`` and is refused.
    """
    if settings_dialect(settings_json) == sql_dialect:
        return settings_json
    target = copy.deepcopy(render_spec(spec, sql_dialect).settings)
    old_comps = settings_json.get("comparisons", [])
    new_comps = target["comparisons"]
    if [c["output_column_name"] for c in old_comps] != [c["output_column_name"] for c in new_comps]:
        raise LinkageConfigError(
            f"model comparisons {[c['output_column_name'] for c in old_comps]} do not match the spec's "
            f"{[c['output_column_name'] for c in new_comps]}: cannot render it for {sql_dialect}")
    for old, new in zip(old_comps, new_comps):
        old_levels, new_levels = old["comparison_levels"], new["comparison_levels"]
        if [x.get("label_for_charts") for x in old_levels] != [x.get("label_for_charts") for x in new_levels]:
            raise LinkageConfigError(
                f"levels of comparison {old['output_column_name']!r} differ from the spec's: "
                f"cannot render the model for {sql_dialect}")
        for o, n in zip(old_levels, new_levels):
            for key in _TRAINED_LEVEL_KEYS:
                if key in o:
                    n[key] = o[key]
    for key in ("probability_two_random_records_match",):
        if key in settings_json:
            target[key] = settings_json[key]
    return target
