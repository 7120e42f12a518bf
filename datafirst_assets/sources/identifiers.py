"""Vectorised normalisation and validation of personal identifiers (polars expressions)."""

from __future__ import annotations

import polars as pl
from anyascii import anyascii

PNC_CHECK_LETTERS = "ZABCDEFGHJKLMNPQRTUVWXY"
POSTCODE_PATTERN = r"^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}$"
PNC_PATTERN = r"^\d{4}/\d{7}[A-Z]$"
CRO_PATTERN = r"^\d{6}/\d{2}[A-Z]$"


def pnc_check_letter(year: int, serial: int) -> str:
    """Check letter of a PNC id: (last two digits of the year followed by the 7-digit serial) mod 23."""
    return PNC_CHECK_LETTERS[int(f"{year % 100:02d}{serial:07d}") % 23]


def fold_to_ascii(values: pl.Series) -> pl.Series:
    """Transliterate each value to ASCII with anyascii (``Siobhán`` -> ``Siobhan``,
    ``Nguyễn`` -> ``Nguyen``, ``Łukasz`` -> ``Lukasz``), so a letter is folded, never deleted.

    Only distinct values that are not ASCII already go through Python: names repeat a lot.
    """
    values = values.cast(pl.String)
    non_ascii = values.str.contains(r"[^\x00-\x7F]").fill_null(False)
    if not non_ascii.any():
        return values
    distinct = values.filter(non_ascii).unique().to_list()
    return values.replace({v: anyascii(v) for v in distinct})


def fold_name(expr: pl.Expr) -> pl.Expr:
    """Expression form of :func:`fold_to_ascii`."""
    return expr.map_batches(fold_to_ascii, return_dtype=pl.String)


def original_name(expr: pl.Expr) -> pl.Expr:
    """The name as written (every letter kept), trimmed, single-spaced; empty -> null."""
    cleaned = expr.str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.when(cleaned == "").then(None).otherwise(cleaned)


def clean_name(expr: pl.Expr) -> pl.Expr:
    """Folded to ASCII, upper case, letters/space/hyphen/apostrophe only, single spaces;
    empty -> null. Accented letters are transliterated first (``Zoë`` -> ``ZOE``), so no
    letter of a name is lost; digits and other symbols go."""
    cleaned = (
        fold_name(expr).str.to_uppercase()
        .str.replace_all(r"[0-9]", "")
        .str.replace_all(r"[^A-Z' \-]", " ")
        .str.replace_all(r"\s*-\s*", "-")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars(" -'")
    )
    return pl.when(cleaned == "").then(None).otherwise(cleaned)


def name_key(expr: pl.Expr) -> pl.Expr:
    """A cleaned name as a person reads it: apostrophes, hyphens and spaces removed, so
    ``O'BRIEN``, ``OBRIEN`` and ``O BRIEN`` (or ``MARY-ANN`` and ``MARY ANN``) are one key."""
    key = expr.str.replace_all(r"[' \-]", "")
    return pl.when(key == "").then(None).otherwise(key)


def normalise_postcode(expr: pl.Expr) -> pl.Expr:
    """'sw1a1aa' / 'SW1A  1AA' -> 'SW1A 1AA'; anything that is not a UK postcode shape -> null."""
    compact = expr.str.to_uppercase().str.replace_all(r"[^A-Z0-9]", "")
    formatted = pl.concat_str([compact.str.slice(0, compact.str.len_chars() - 3), pl.lit(" "), compact.str.slice(-3)])
    return pl.when(formatted.str.contains(POSTCODE_PATTERN)).then(formatted)


def normalise_pnc(expr: pl.Expr, pivot_year: int = 2030) -> pl.Expr:
    """PNC id to YYYY/NNNNNNNA (serial zero-padded); wrong shape or wrong check letter -> null.

    The short form YY/NNNNNNNA is expanded to the century before `pivot_year` (the check letter
    uses only the last two digits of the year, so it is checked either way).
    """
    parts = expr.str.to_uppercase().str.replace_all(r"\s", "").str.extract_groups(
        r"^(\d{2}|\d{4})/?(\d{1,7})([A-Z])$")
    year, serial, letter = parts.struct.field("1"), parts.struct.field("2"), parts.struct.field("3")
    short = year.str.len_chars() == 2
    century = pl.when(year.cast(pl.Int64, strict=False) + 2000 < pivot_year).then(pl.lit("20")).otherwise(pl.lit("19"))
    year = pl.when(short).then(pl.concat_str([century, year])).otherwise(year)
    padded = serial.str.zfill(7)
    check_index = pl.concat_str([year.str.slice(2, 2), padded]).cast(pl.Int64, strict=False) % 23
    expected = check_index.replace_strict(
        {i: letter for i, letter in enumerate(PNC_CHECK_LETTERS)}, default=None, return_dtype=pl.String
    )
    return pl.when(letter == expected).then(pl.concat_str([year, pl.lit("/"), padded, letter]))


def pnc_is_pattern_junk(expr: pl.Expr) -> pl.Expr:
    """Placeholder-looking PNCs (serial of one repeated digit, e.g. 0000000)."""
    return expr.str.slice(5, 7).str.contains(r"^(0{7}|1{7}|2{7}|3{7}|4{7}|5{7}|6{7}|7{7}|8{7}|9{7})$")


# A PNC recorded with this many different dates of birth in one file is a shared junk value.
JUNK_PNC_MIN_DOBS = 4


def junk_pnc(pnc: str, dob: str | None = None) -> pl.Expr:
    """True where column ``pnc`` holds a junk value: a placeholder pattern, or (with a ``dob``
    column) one PNC recorded with JUNK_PNC_MIN_DOBS or more dates of birth in the frame."""
    junk = pl.col(pnc).is_not_null() & pnc_is_pattern_junk(pl.col(pnc))
    if dob is not None:
        shared = pl.col(dob).n_unique().over(pnc) >= JUNK_PNC_MIN_DOBS
        junk = junk | (pl.col(pnc).is_not_null() & shared)
    return junk


def normalise_cro(expr: pl.Expr) -> pl.Expr:
    """CRO number to NNNNNN/YYA (serial zero-padded); anything else -> null."""
    parts = expr.str.to_uppercase().str.replace_all(r"\s", "").str.extract_groups(r"^(\d{1,6})/?(\d{2})([A-Z])$")
    serial, year, letter = parts.struct.field("1"), parts.struct.field("2"), parts.struct.field("3")
    return pl.when(letter.is_not_null()).then(pl.concat_str([serial.str.zfill(6), pl.lit("/"), year, letter]))
