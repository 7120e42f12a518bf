"""Postcode area -> region (the ITL1 regions of the UK), for the re-identification risk key.

The risk key describes what an outsider could plausibly know and match on. A region is the
level of area used in that key: at postcode-area level (about 120 areas) almost every person
in a small table would be unique, which measures the table's size, not its risk. Areas not
listed (and unparseable values) map to "Other".
"""

from __future__ import annotations

import polars as pl

REGIONS: dict[str, tuple[str, ...]] = {
    "North East": ("DH", "DL", "NE", "SR", "TS"),
    "North West": ("BB", "BL", "CA", "CH", "CW", "FY", "L", "LA", "M", "OL", "PR", "SK", "WA", "WN"),
    "Yorkshire and The Humber": ("BD", "DN", "HD", "HG", "HU", "HX", "LS", "S", "WF", "YO"),
    "East Midlands": ("DE", "LE", "LN", "NG", "NN"),
    "West Midlands": ("B", "CV", "DY", "HR", "ST", "TF", "WR", "WS", "WV"),
    "East of England": ("AL", "CB", "CM", "CO", "EN", "HP", "IP", "LU", "NR", "PE", "SG", "SS", "WD"),
    "London": ("BR", "CR", "E", "EC", "HA", "IG", "KT", "N", "NW", "RM", "SE", "SM", "SW", "TW", "UB", "W", "WC"),
    "South East": ("BN", "CT", "DA", "GU", "ME", "MK", "OX", "PO", "RG", "RH", "SL", "SO", "TN"),
    "South West": ("BA", "BH", "BS", "DT", "EX", "GL", "PL", "SN", "SP", "TA", "TQ", "TR"),
    "Wales": ("CF", "LD", "LL", "NP", "SA", "SY"),
    "Scotland": ("AB", "DD", "DG", "EH", "FK", "G", "HS", "IV", "KA", "KW", "KY", "ML", "PA", "PH", "TD", "ZE"),
    "Northern Ireland": ("BT",),
}
AREA_REGION = {area: region for region, areas in REGIONS.items() for area in areas}
OTHER = "Other"


def region_of(area: pl.Expr) -> pl.Expr:
    """The region of a postcode area code (null stays null)."""
    return area.str.to_uppercase().replace_strict(AREA_REGION, default=OTHER, return_dtype=pl.String)
