"""The note that goes with the synthetic release: what is kept, what is not, and why it cannot be analysed."""

from __future__ import annotations

from datafirst_assets.synthetic.labels import SYNTHETIC_LABEL

NOTE = """\
# About the synthetic release

**{label}.**

These tables exist so that researchers can write and test their code before access to the
real release is granted. Code that runs on them runs unchanged on the real release. Results
computed from them mean nothing: do not analyse them, and do not report anything from them.

## What is the same as in the real release

- The tables, their columns, the column order and the column types.
- The codes: every categorical value is one the real table holds for at least {k} people
  (or rows, where a row has no person).
- The joins. Every foreign key points at an existing row of its parent table; every table's
  key is unique. The number of children per parent (offences per case, requirements per event,
  movements per custodial journey, parties per case, ...) and the number of rows per person
  follow the real distributions. The cross-justice lookup holds exactly the synthetic
  per-dataset persons, its high / medium / low ids nest, no id holds two persons of one dataset
  unless the real lookup does, and the number of persons per id follows the real distribution.
  The case lookup pairs magistrates' and Crown Court rows one to one. Every documented join
  of the release README runs and returns rows.
- The distribution of each column taken on its own, within disclosure control, and its share
  of missing values.
- Roughly the number of rows of every table (x {scale} of the real release).

## How it differs

- **Relationships between columns are not kept.** Every column is drawn on its own. Within a
  row, values need not make sense together: an offence group need not match the offence code,
  a sentence can come before the first hearing, a release before the reception, an end date
  before its start date, an acquittal can carry a custodial sentence, an age need not fit the
  person's other records.
- **Relationships across tables are not kept.** A child row's values are unrelated to its
  parent's (an offence date is unrelated to the case's hearing date); one person's rows carry
  unrelated sexes, ethnicities, ages and areas; persons sharing a cross-justice id have
  unrelated records in each dataset; the two sides of a case-lookup pair are unrelated (the
  magistrates' row need not have been committed to the Crown Court, nor be the same person).
- **Small and extreme values are missing.** Categories seen for fewer than {k} people are
  never generated. Numbers and dates are clipped to about the {lower:g}th-{upper:g}th
  percentiles, then drawn uniformly within histogram bins; dates uniformly within months.
  Rare shapes of cross-justice persons are coarsened.
- **Keys are new.** Hashed ids are random hexadecimal strings of the real length and match
  nothing in the real release; a synthetic id repeats about as often as the real one (a shared
  case number, a person's PNC) but two rows sharing it have nothing else in common. Person ids
  and cross-justice ids are new numbers. Nothing in these tables can be linked to the real
  release, to another synthetic release, or to anybody.

## How it was made

From the disclosure-checked summaries (`summaries.json`, sha256 `{sha256}`), which a
reviewer can read in full: generation never reads a real row. Seed {seed}, scale {scale},
smallest published cell {k}. Fidelity and privacy figures: `synthetic_report.md`.
Between full refreshes a table keeps its approved summary, and so its synthetic rows, until the
real table's marginals or row count move by more than the refresh tolerance ({tolerance:g}; see the
summaries asset's `kept_within_tolerance`): a new extract of a few rows does not redraw the release.

| table | rows |
|---|---|
{tables}
"""


def differences_note(doc: dict, *, seed: int, scale: float, sha256: str,
                     rows: dict[str, int] | None = None, tolerance: float = 0.0) -> str:
    """The note for a synthetic release made from `doc`; `rows`: synthetic rows per `source.table`."""
    rules = doc["rules"]
    clip = rules["clip_quantile"] * 100
    counts = rows if rows is not None else {name: t["rows"] for name, t in doc["tables"].items()}
    return NOTE.format(
        label=SYNTHETIC_LABEL, k=rules["k"], scale=scale, seed=seed, sha256=sha256, lower=clip, upper=100 - clip,
        tolerance=tolerance,
        tables="\n".join(f"| {name} | {n:,} |" for name, n in counts.items()),
    )
