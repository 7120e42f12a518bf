"""Write deliveries (raw CSV + manifest per source and extract date) and the ground truth.

Sources are written as soon as they are built and large tables in row chunks, so memory stays
bounded by one source's tables rather than the whole simulation.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from datafirst_assets.simulate.malformed import Malformer, spoilable
from datafirst_assets.simulate.population import people_truth
from datafirst_assets.simulate.tables import FormatContext, TableData
from datafirst_assets.simulate.util import NULL_DAY, from_day, to_day
from datafirst_assets.simulate.world import World
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.sources.spec import SourceSpec, TableSpec

ID_BASE = 100_001
CHUNK_ROWS = 200_000
_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class Written:
    k: np.ndarray  # delivery index per builder row (-1: not delivered)
    ids: np.ndarray  # id per builder row (-1: not delivered)


def _sex_codes(spec: SourceSpec) -> tuple[str, str]:
    male = next(k for k, v in spec.sex_codes.items() if v == "M")
    female = next(k for k, v in spec.sex_codes.items() if v == "F")
    return male, female


def _check_columns(tspec: TableSpec, td: TableData) -> None:
    auto = {c.name for c in tspec.columns if c.kind in ("id", "ref")}
    want = set(tspec.column_names) - auto
    got = set(td.cols)
    if want != got:
        raise RuntimeError(
            f"{td.source}.{td.name}: builder columns differ from the registry: "
            f"missing {sorted(want - got)}, unexpected {sorted(got - want)}"
        )


def clear_deliveries(out: Path) -> None:
    """Remove earlier simulated deliveries (date-named folders) of the registry's sources."""
    for key in SOURCES:
        d = out / key
        if d.is_dir():
            for sub in d.iterdir():
                if sub.is_dir() and _DATE_DIR.match(sub.name):
                    shutil.rmtree(sub)


class _CsvFile:
    """One delivered table file: written chunk by chunk, hashed on the way."""

    def __init__(self, path: Path, spec: SourceSpec, malformer: Malformer | None = None):
        self.path = path
        self.spec = spec
        self.malformer = malformer
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.sha = hashlib.sha256()
        self.rows = 0
        self.header_done = False
        self.recode = spec.encoding.replace("_", "-").lower() not in ("utf-8", "utf8")

    def write(self, df: pl.DataFrame) -> None:
        if self.malformer is not None:
            df = self.malformer.spoil(df)
        buf = io.BytesIO()
        df.write_csv(
            buf,
            separator=self.spec.delimiter,
            quote_style="necessary",
            null_value="",
            include_header=not self.header_done,
        )
        data = buf.getvalue()
        if self.malformer is not None:
            data = self.malformer.finish_bytes(data)
        if self.recode:
            data = data.decode("utf-8").encode(self.spec.encoding, errors="replace")
        self.fh.write(data)
        self.sha.update(data)
        self.rows += df.height
        self.header_done = True

    def close(self) -> dict:
        self.fh.close()
        return {"file": self.path.name, "rows": self.rows, "sha256": self.sha.hexdigest()}


class DeliveryWriter:
    def __init__(self, w: World, out: Path, truth_out: Path, malformed_rate: float = 0.0):
        self.w = w
        # Share of rows of each leaf table written malformed (simulate/malformed.py); 0: none.
        self.malformed_rate = malformed_rate
        self.spoiled: dict[str, int] = {}
        self.out = Path(out)
        self.truth_out = Path(truth_out)
        self.D = w.extract_days.astype(np.int64)
        self.dates = [from_day(int(d)).isoformat() for d in self.D]
        self.written: dict[str, Written] = {}
        self.records: dict[str, dict[str, int]] = {}
        self.person_parts: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = []
        self.crown_person: np.ndarray | None = None
        self.out.mkdir(parents=True, exist_ok=True)
        clear_deliveries(self.out)

    # ------------------------------------------------------------------------------------
    def write_source(self, key: str, tables: dict[str, TableData]) -> None:
        w, D, K = self.w, self.D, len(self.D)
        spec = SOURCES[key]
        lo, hi = w.window(key)
        end = w.cfg.coverage[key][1]
        cov_end = to_day(end) if end else None
        fc = FormatContext(spec.date_format, _sex_codes(spec), w.vocab, w.company_series)
        folders = [self.out / key / d for d in self.dates]
        for f in folders:
            f.mkdir(parents=True, exist_ok=True)
        manifests = [
            {"source": key, "system": spec.system, "extract_date": self.dates[j], "tables": {}}
            for j in range(K)
        ]
        self.records[key] = {}
        source_no = list(SOURCES).index(key)
        for table_no, tspec in enumerate(spec.tables):
            td = tables.pop(f"{key}/{tspec.name}")
            _check_columns(tspec, td)
            n = td.n
            if tspec.parent is None:
                e = td.event_day.astype(np.int64)
                keep = (e >= lo) & (e <= hi)
                k = np.searchsorted(D, e, side="left")
            else:
                pk = self.written[f"{key}/{tspec.parent}"].k[td.parent_row] if n else np.zeros(0, np.int64)
                keep = pk >= 0
                k = pk.copy()
                if td.event_day is not None:
                    e = td.event_day.astype(np.int64)
                    has = e != NULL_DAY
                    future = has & (e > hi)
                    if td.future == "drop":
                        keep &= ~future
                    own = np.searchsorted(D, e, side="left")
                    k = np.where(has & ~future, np.maximum(pk, own), pk)
            kept = np.flatnonzero(keep)
            kk = k[kept].astype(np.int64)
            m = len(kept)

            # ids increase with delivery and event date; one-per-parent sections reuse the parent id
            ref_cols = [c.name for c in tspec.columns if c.kind == "ref"]
            parent_ids = self.written[f"{key}/{tspec.parent}"].ids if tspec.parent else None
            if tspec.parent and not ref_cols:
                row_id = parent_ids[td.parent_row[kept]]
                order = np.lexsort((row_id, kk))
            else:
                key2 = td.event_day[kept] if td.event_day is not None else parent_ids[td.parent_row[kept]]
                order = np.lexsort((np.arange(m), key2, kk))
                row_id = np.empty(m, dtype=np.int64)
                row_id[order] = ID_BASE + np.arange(m)
            full_k = np.full(n, -1, dtype=np.int64)
            full_id = np.full(n, -1, dtype=np.int64)
            full_k[kept] = kk
            full_id[kept] = row_id
            self.written[f"{key}/{tspec.name}"] = Written(full_k, full_id)

            rows_sorted = kept[order]
            k_sorted = kk[order]
            id_sorted = row_id[order]
            bounds = np.searchsorted(k_sorted, np.arange(K + 1), side="left")
            for j in range(K):
                malformer = (Malformer(self.malformed_rate, w.seed, spec, tspec, j)
                             if self.malformed_rate > 0 and spoilable(spec, tspec) else None)
                f = _CsvFile(folders[j] / f"{tspec.name}.csv", spec, malformer)
                a, b = int(bounds[j]), int(bounds[j + 1])
                starts = list(range(a, b, CHUNK_ROWS)) or [a]
                for s0 in starts:
                    s1 = min(b, s0 + CHUNK_ROWS)
                    f.write(
                        self._frame(
                            tspec, td, rows_sorted[s0:s1], id_sorted[s0:s1], D[j], cov_end, parent_ids, fc
                        )
                    )
                manifests[j]["tables"][tspec.name] = f.close()
                for fault, n in (malformer.spoiled if malformer else {}).items():
                    self.spoiled[fault] = self.spoiled.get(fault, 0) + n
            self.records[key][tspec.name] = m
            if tspec.is_person_table and m:
                self.person_parts.append((source_no, table_no, id_sorted, k_sorted, td.person[rows_sorted]))
            if key == "crown_court" and tspec.name == "xhibit_flatfile":
                self.crown_person = td.person
            del td
        for j in range(K):
            text = json.dumps(manifests[j], indent=2, sort_keys=True) + "\n"
            (folders[j] / "manifest.json").write_text(text, encoding="utf-8")

    def _frame(
        self,
        tspec: TableSpec,
        td: TableData,
        rows: np.ndarray,
        ids_: np.ndarray,
        extract_day: int,
        cov_end: int | None,
        parent_ids: np.ndarray | None,
        fc: FormatContext,
    ) -> pl.DataFrame:
        sub = td.take(rows)
        cutoff = extract_day if cov_end is None else min(extract_day, cov_end)
        for rule in sub.blank_rules:
            mask = (rule.trigger != NULL_DAY) & (rule.trigger > cutoff)
            if not mask.any():
                continue
            for c in rule.cols:
                sub.cols[c].blank(mask)
            for c, v in rule.values.items():
                sub.cols[c].blank(mask, v)
        columns: dict[str, pl.Series] = {}
        for c in tspec.columns:
            if c.kind == "id":
                s = pl.Series(ids_).cast(pl.Utf8)
            elif c.kind == "ref":
                s = pl.Series(parent_ids[sub.parent_row]).cast(pl.Utf8)
            else:
                s = sub.cols[c.name].to_series(fc).cast(pl.Utf8)
            columns[c.name] = s.rename(c.name)
        if not len(rows):
            return pl.DataFrame({c.name: pl.Series([], dtype=pl.Utf8) for c in tspec.columns})
        return pl.DataFrame(columns)

    # ------------------------------------------------------------------------------------
    def finish(self, links) -> dict:
        w = self.w
        self.truth_out.mkdir(parents=True, exist_ok=True)
        people_truth(w.people, w.vocab, w.horizon).write_parquet(self.truth_out / "people.parquet")
        keys = list(SOURCES)
        frames = []
        for source_no, table_no, ids_, ks, persons in sorted(self.person_parts, key=lambda p: (p[0], p[1])):
            key = keys[source_no]
            tname = SOURCES[key].tables[table_no].name
            m = len(ids_)
            frames.append(
                pl.DataFrame(
                    {
                        "source": pl.Series([key], dtype=pl.Utf8).gather(pl.Series(np.zeros(m, np.int32))),
                        "table": pl.Series([tname], dtype=pl.Utf8).gather(pl.Series(np.zeros(m, np.int32))),
                        "record_id": pl.Series(ids_).cast(pl.Utf8),
                        "extract_date": pl.Series(self.D[ks].astype(np.int32)).cast(pl.Date),
                        "person_id": pl.Series(w.people.person_id[persons]),
                    }
                )
            )
        pr = (
            pl.concat(frames)
            if frames
            else pl.DataFrame(
                schema={
                    "source": pl.Utf8,
                    "table": pl.Utf8,
                    "record_id": pl.Utf8,
                    "extract_date": pl.Date,
                    "person_id": pl.Int64,
                }
            )
        )
        pr.write_parquet(self.truth_out / "person_records.parquet")

        mag = self.written["magistrates/hocas_flatfile"]
        crown = self.written["crown_court/xhibit_flatfile"]
        mid = mag.ids[links.mag_rows] if len(links.mag_rows) else np.zeros(0, np.int64)
        cid = crown.ids[links.crown_rows] if len(links.crown_rows) else np.zeros(0, np.int64)
        ok = (mid >= 0) & (cid >= 0)
        case_type = pl.Series(list(links.case_type_codes)).gather(
            pl.Series(links.case_type[ok].astype(np.int32))
        )
        links_df = pl.DataFrame(
            {
                "defendant_case_id": pl.Series(mid[ok]).cast(pl.Utf8),
                "defendant_on_case_id": pl.Series(cid[ok]).cast(pl.Utf8),
                "case_type": case_type,
                "person_id": pl.Series(w.people.person_id[self.crown_person[links.crown_rows[ok]]]),
            }
        ).sort(pl.col("defendant_on_case_id").cast(pl.Int64))
        links_df.write_parquet(self.truth_out / "case_links.parquet")
        (self.truth_out / "config.json").write_text(
            json.dumps(
                {
                    "seed": w.seed,
                    "people": w.people.n,
                    "extract_dates": self.dates,
                    "config": w.cfg.to_dict(),
                },
                indent=2,
                sort_keys=True,
            )
            + "\n",
            encoding="utf-8",
        )
        ordered = {k: self.records[k] for k in SOURCES if k in self.records}
        return {
            "extract_dates": self.dates,
            "records": ordered,
            "malformed_rows": dict(sorted(self.spoiled.items())),
            "person_records": pr.height,
            "case_links": links_df.height,
            "people_appearing": pr["person_id"].n_unique() if pr.height else 0,
        }
