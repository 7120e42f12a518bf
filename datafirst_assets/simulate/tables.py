"""In-memory tables before they are written: typed columns that know how to become raw text.

A table builder returns `TableData`: one `Col` per registry column except the id and the
parent reference (assigned at write time), the event day that decides the delivery, the
parent row of each child row, the true person of each person-table row, and `BlankRule`s that
hide what was not yet known at the delivery's extract date.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from datafirst_assets.simulate import identifiers as ids
from datafirst_assets.simulate.recording import ETH_VALUES, SEX_UNKNOWN, Recorded
from datafirst_assets.simulate.util import NULL_DAY
from datafirst_assets.simulate.vocab import Vocab


def null_where(s: pl.Series, mask: np.ndarray) -> pl.Series:
    if not mask.any():
        return s
    return pl.select(pl.when(pl.Series(mask)).then(None).otherwise(s)).to_series()


@dataclass
class FormatContext:
    date_format: str
    sex_codes: tuple[str, str]  # (male code, female code)
    vocab: Vocab
    company_names: pl.Series


class Col:
    def take(self, idx: np.ndarray) -> Col:  # pragma: no cover - interface
        raise NotImplementedError

    def to_series(self, fc: FormatContext) -> pl.Series:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class Days(Col):
    v: np.ndarray

    def take(self, idx):
        return Days(self.v[idx])

    def blank(self, mask):
        self.v = np.where(mask, NULL_DAY, self.v).astype(np.int32)

    def to_series(self, fc):
        null = self.v == NULL_DAY
        s = pl.Series(np.where(null, 0, self.v).astype(np.int32)).cast(pl.Date).dt.strftime(fc.date_format)
        return null_where(s, null)


@dataclass
class Ints(Col):
    v: np.ndarray
    null: np.ndarray | None = None

    def take(self, idx):
        return Ints(self.v[idx], None if self.null is None else self.null[idx])

    def blank(self, mask):
        self.null = mask.copy() if self.null is None else (self.null | mask)

    def to_series(self, fc):
        s = pl.Series(self.v.astype(np.int64)).cast(pl.Utf8)
        return s if self.null is None else null_where(s, self.null)


@dataclass
class Money(Col):
    cents: np.ndarray  # -1 = missing

    def take(self, idx):
        return Money(self.cents[idx])

    def blank(self, mask):
        self.cents = np.where(mask, -1, self.cents)

    def to_series(self, fc):
        c = np.maximum(self.cents, 0).astype(np.int64)
        s = pl.select(
            pl.concat_str(
                [
                    pl.Series(c // 100).cast(pl.Utf8),
                    pl.lit("."),
                    pl.Series(c % 100).cast(pl.Utf8).str.zfill(2),
                ]
            )
        ).to_series()
        return null_where(s, self.cents < 0)


@dataclass
class Codes(Col):
    idx: np.ndarray  # -1 = missing
    codes: tuple[str, ...]

    def take(self, idx):
        return Codes(self.idx[idx], self.codes)

    def blank(self, mask, value: str | None = None):
        self.idx = np.where(mask, -1 if value is None else self.codes.index(value), self.idx)

    def to_series(self, fc):
        s = pl.Series(list(self.codes), dtype=pl.Utf8).gather(
            pl.Series(np.maximum(self.idx, 0).astype(np.int32))
        )
        return null_where(s, self.idx < 0)


@dataclass
class Flags(Col):
    v: np.ndarray  # 1 Y, 0 N, -1 missing

    def take(self, idx):
        return Flags(self.v[idx])

    def blank(self, mask, value: str | None = None):
        self.v = np.where(mask, -1 if value is None else int(value == "Y"), self.v)

    def to_series(self, fc):
        s = pl.Series(np.where(self.v == 1, "Y", "N"))
        return null_where(s, self.v < 0)


@dataclass
class Text(Col):
    s: pl.Series

    def take(self, idx):
        return Text(self.s.gather(pl.Series(np.asarray(idx, dtype=np.int64))))

    def to_series(self, fc):
        return self.s.cast(pl.Utf8)


@dataclass
class Names(Col):
    idx: np.ndarray
    style: np.ndarray
    noise: np.ndarray | None = None  # values 1/2: leading/trailing space
    idx2: np.ndarray | None = None  # second name joined with a space (middle names)
    override: pl.Series | None = None  # non-null values replace the name (company names)

    def take(self, idx):
        return Names(
            self.idx[idx],
            self.style[idx],
            None if self.noise is None else self.noise[idx],
            None if self.idx2 is None else self.idx2[idx],
            None if self.override is None else self.override.gather(pl.Series(np.asarray(idx, np.int64))),
        )

    def to_series(self, fc):
        v = fc.vocab.series
        s = v.gather(pl.Series(np.maximum(self.idx, 0).astype(np.int32)))
        null = self.idx < 0
        if self.idx2 is not None:
            s2 = v.gather(pl.Series(np.maximum(self.idx2, 0).astype(np.int32)))
            s2 = null_where(s2, self.idx2 < 0)
            s = null_where(s, null)
            s = pl.select(pl.concat_str([s, s2], separator=" ", ignore_nulls=True)).to_series()
            null = null & (self.idx2 < 0)
        if self.override is not None:
            s = pl.select(pl.coalesce(self.override, s)).to_series()
            null = null & self.override.is_null().to_numpy()
        style = pl.Series(self.style)
        s = pl.select(
            pl.when(style == 1)
            .then(s.str.to_uppercase())
            .when(style == 2)
            .then(s.str.to_lowercase())
            .otherwise(s)
        ).to_series()
        if self.noise is not None and self.noise.any():
            nz = pl.Series(self.noise)
            s = pl.select(
                pl.when(nz == 1).then(pl.lit(" ") + s).when(nz == 2).then(s + pl.lit(" ")).otherwise(s)
            ).to_series()
        return null_where(s, null)


@dataclass
class Lookup(Col):
    """Index into a per-column tuple of output strings (None = blank)."""

    idx: np.ndarray
    kind: str  # "sex" | "ethnicity"

    def take(self, idx):
        return Lookup(self.idx[idx], self.kind)

    def to_series(self, fc):
        values = (*fc.sex_codes, *SEX_UNKNOWN) if self.kind == "sex" else ETH_VALUES
        s = pl.Series(list(values), dtype=pl.Utf8).gather(pl.Series(self.idx.astype(np.int32)))
        return s


@dataclass
class Postcodes(Col):
    code: np.ndarray
    nospace: np.ndarray
    lower: np.ndarray

    def take(self, idx):
        return Postcodes(self.code[idx], self.nospace[idx], self.lower[idx])

    def to_series(self, fc):
        return ids.postcode_strings(self.code, self.nospace, self.lower)


@dataclass
class Addresses(Col):
    code: np.ndarray  # flat * 1e8 + house * 1e5 + street; -1 missing; -2 no fixed abode
    abbr: np.ndarray

    def take(self, idx):
        return Addresses(self.code[idx], self.abbr[idx])

    def to_series(self, fc):
        c = np.maximum(self.code, 0)
        flat = c // 10**8
        house = c // 10**5 % 1000
        street = (c % 10**5).astype(np.int32)
        st = pl.select(
            pl.when(pl.Series(self.abbr))
            .then(fc.vocab.streets_abbreviated.gather(pl.Series(street)))
            .otherwise(fc.vocab.streets.gather(pl.Series(street)))
        ).to_series()
        line = pl.select(pl.concat_str([pl.Series(house).cast(pl.Utf8), pl.lit(" "), st])).to_series()
        line = pl.select(
            pl.when(pl.Series(flat > 0))
            .then(pl.concat_str([pl.lit("Flat "), pl.Series(flat).cast(pl.Utf8), pl.lit(", "), line]))
            .otherwise(line)
        ).to_series()
        line = pl.select(pl.when(pl.Series(self.code == -2)).then(pl.lit("NFA")).otherwise(line)).to_series()
        return null_where(line, self.code == -1)


@dataclass
class BlankRule:
    """Where `trigger` (a day) is after the row's extract date: blank `cols`, set `values`."""

    trigger: np.ndarray
    cols: tuple[str, ...] = ()
    values: dict[str, str] = field(default_factory=dict)

    def take(self, idx):
        return BlankRule(self.trigger[idx], self.cols, self.values)


@dataclass
class TableData:
    source: str
    name: str
    cols: dict[str, Col]
    event_day: np.ndarray | None = None
    parent_row: np.ndarray | None = None
    person: np.ndarray | None = None
    blank_rules: list[BlankRule] = field(default_factory=list)
    future: str = "drop"  # child rows whose own event is after the last extract: drop | pending
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        if self.event_day is not None:
            return len(self.event_day)
        if self.parent_row is not None:
            return len(self.parent_row)
        return 0

    def take(self, idx: np.ndarray) -> TableData:
        return TableData(
            source=self.source,
            name=self.name,
            cols={k: c.take(idx) for k, c in self.cols.items()},
            event_day=None if self.event_day is None else self.event_day[idx],
            parent_row=None if self.parent_row is None else self.parent_row[idx],
            person=None if self.person is None else self.person[idx],
            blank_rules=[r.take(idx) for r in self.blank_rules],
            future=self.future,
            extra={k: v[idx] for k, v in self.extra.items()},
        )


def person_columns(rec: Recorded, mapping: dict[str, str]) -> dict[str, Col]:
    """Columns for the recorded identity. `mapping`: field -> column name, fields are
    forename, mid1, mid2, middle (both joined), surname, dob, sex, ethnicity, postcode, address, pnc, cro."""
    fore_noise = np.where(rec.noise <= 2, rec.noise, 0)
    sur_noise = np.where(rec.noise >= 3, rec.noise - 2, 0)
    out: dict[str, Col] = {}
    for fld, col in mapping.items():
        if fld == "forename":
            out[col] = Names(rec.fore, rec.style, fore_noise)
        elif fld == "mid1":
            out[col] = Names(rec.mid1, rec.style)
        elif fld == "mid2":
            out[col] = Names(rec.mid2, rec.style)
        elif fld == "middle":
            out[col] = Names(rec.mid1, rec.style, idx2=rec.mid2)
        elif fld == "surname":
            out[col] = Names(rec.sur, rec.style, sur_noise)
        elif fld == "dob":
            out[col] = Days(rec.dob)
        elif fld == "sex":
            out[col] = Lookup(rec.sex, "sex")
        elif fld == "ethnicity":
            out[col] = Lookup(rec.eth, "ethnicity")
        elif fld == "postcode":
            out[col] = Postcodes(rec.postcode, rec.pc_nospace, rec.pc_lower)
        elif fld == "address":
            out[col] = Addresses(rec.address, rec.addr_abbr)
        elif fld == "pnc":
            out[col] = Text(rec.pnc)
        elif fld == "cro":
            out[col] = Text(rec.cro)
        else:  # pragma: no cover
            raise KeyError(fld)
    return out
