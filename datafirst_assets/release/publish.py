"""Write a release to disk: Parquet per table, the catalogues, a manifest and a README.

    <root>/<release_id>/
        tables/<source>/<table>.parquet            (synthetic: <table>.synthetic.parquet)
        catalogue/<dataset>.md, <dataset>.html
        manifest.json
        README.md
    <root>/LATEST_<kind>                           id of the release of that kind published last

The release id is `<kind>-<latest extract date>-<8 hex>`, the hex a hash over every table's
content checksum, so publishing the same tables again gives the same id (and replaces the
folder), and any change to any table gives a new one. Files carry Parquet key-value metadata
(`datafirst.synthetic`, `datafirst.release_id`, ...) so a file separated from its folder still
says what it is.

A release is built in a temporary folder beside its final place and renamed into place only
when complete: a failure part-way leaves the previous state untouched. Before anything is
written the release must pass its gates (`release.gates`: every table and catalogue value
re-scanned for identifiers, every table's contract, re-identification risk) and the key must
be publishable (`deidentify.keys.require_publishable_key`); otherwise nothing is written. The
manifest records each table's gate results and check results and the key's fingerprint; the
README summarises them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Container, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from datafirst_assets.common.folders import link_or_copy, write_text_atomically
from datafirst_assets.catalogue.build import Catalogue
from datafirst_assets.contracts.documents import validate_manifest
from datafirst_assets.deidentify.disclosure import RiskRule
from datafirst_assets.deidentify.keys import KEY_ENV, key_fingerprint, require_publishable_key
from datafirst_assets.deidentify.pii_gate import RawIdentifiers
from datafirst_assets.deidentify.release_spec import ReleaseTable, release_tables
from datafirst_assets.common.hashing import sha256_file
from datafirst_assets.release.examples import example_queries
from datafirst_assets.warehouse.lazy_tables import MappedOnUse
from datafirst_assets.release.gates import CarriedGate, ReleaseGates, refuse_unless_passed, scan_release

KINDS = ("deidentified", "synthetic")
MANIFEST = "manifest.json"
METADATA_PREFIX = "datafirst."
DEVELOPMENT_KEY_NOTE = f"development key ({KEY_ENV} unset)"
ENVIRONMENT_KEY_NOTE = "from environment"
#: Whether a release reads the next table (read on use) while it gates one (see `_Checksummed`).
READ_AHEAD = True
#: How many table files are written at once. Steps run one at a time (`runner._run_job`) and writing a
#: Parquet file (zstd) runs in Arrow with the GIL released, on one core: the release's files written
#: one after another left the second core idle for the largest part of an incremental release step.
#: Each file is written by the same call as before, so its bytes are those it had (each is hashed from
#: disk once written, as before).
WRITERS = max(1, min(2, os.cpu_count() or 1))


class ReleaseError(ValueError):
    """The tables or catalogues given cannot make a consistent release."""


@dataclass(frozen=True)
class ReleaseInfo:
    release_id: str
    path: Path
    manifest: dict


def release_summary(info: ReleaseInfo) -> pl.DataFrame:
    """What the release asset stores: one row per table file of the release, from its manifest."""
    return pl.DataFrame([
        {"release_id": info.release_id, "source": t["source"], "table": t["table"], "path": t["path"],
         "rows": t["rows"], "sha256": t["sha256"]}
        for t in info.manifest["tables"]
    ])


def table_file(source: str, table: str, kind: str) -> str:
    """Path of a table's file inside a release (the name says synthetic for synthetic files)."""
    suffix = ".synthetic.parquet" if kind == "synthetic" else ".parquet"
    return f"tables/{source}/{table}{suffix}"


def latest_file(root: Path, kind: str) -> Path:
    return Path(root) / f"LATEST_{kind}"


def latest_manifest(root: Path | str, kind: str) -> dict | None:
    """The manifest of the release of `kind` published last under `root` (None: none readable)."""
    try:
        release_id = latest_file(Path(root), kind).read_text().strip()
        return json.loads((Path(root) / release_id / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def carried_gates(previous: dict | None, fingerprints: Mapping[tuple[str, str], str]) -> dict[tuple[str, str], CarriedGate]:
    """Gates of the previous release for the tables whose gate fingerprint it recorded unchanged."""
    carried = {}
    for entry in (previous or {}).get("tables", []):
        key = (entry["source"], entry["table"])
        gates = entry.get("gates") or {}
        if gates.get("passed") and entry.get("gate_fingerprint") and entry["gate_fingerprint"] == fingerprints.get(key):
            carried[key] = CarriedGate(*key, previous=gates,
                                       from_release=gates.get("carried_over_from") or previous["release_id"])
    return carried


def write_release(
    root: Path | str,
    kind: str,
    tables: Mapping[tuple[str, str], pl.DataFrame],
    catalogues: Mapping[str, Catalogue],
    *,
    extract_dates: list[str],
    model_versions: Mapping[str, str],
    key_is_development: bool,
    extra: Mapping | None = None,
    specs: Mapping[tuple[str, str], ReleaseTable] | None = None,
    identifiers: Mapping[str, RawIdentifiers] | None = None,
    dates_of_birth: Mapping[tuple[str, str], pl.Series] | None = None,
    risk_rules: Mapping[tuple[str, str], RiskRule] | None = None,
    check_results: Mapping[tuple[str, str], Mapping[str, bool]] | None = None,
    gate_fingerprints: Mapping[tuple[str, str], str] | None = None,
    carried: Mapping[tuple[str, str], CarriedGate] | None = None,
    previous: Mapping | None = None,
    contract_held: Container[tuple[str, str]] = (),
) -> ReleaseInfo:
    """Publish `tables` ((source, table) -> frame) with their catalogues under `root`; see the module doc.

    Every table must have a release spec (default `release_tables()`) with the same columns (written
    in spec order) and every dataset a catalogue whose synthetic label matches `kind`. `identifiers`
    (dataset -> raw names, addresses, system ids) and `dates_of_birth` ((dataset, table) -> each row's
    date of birth) make the publish scan compare against the raw data too; `check_results` are the
    tables' latest Dagster check results, recorded in the manifest. `gate_fingerprints` (recorded per
    table) say what each table's gates saw; `carried` are gates carried over from the previous release
    for tables whose fingerprint it recorded (see `release.gates.CarriedGate`). `previous` (the manifest
    of the release published last under `root`): a carried table's file is linked from that release
    when it is there with the checksum its manifest recorded (the fingerprint covers the table's
    content), instead of being written again; its entry says so (`file_from`, the release that wrote
    the file, whose id the file's metadata carries). `contract_held`: tables whose content the caller
    knows was validated, every row, against the rules of their release schema (`release.gates.scan_release`).
    """
    require_publishable_key()
    if kind not in KINDS:
        raise ReleaseError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not tables:
        raise ReleaseError("a release needs at least one table")
    if not extract_dates:
        raise ReleaseError("a release must say which extract dates it was made from")
    dates = sorted({str(d) for d in extract_dates})
    for value in dates:
        dt.date.fromisoformat(value)  # ValueError names the bad date
    specs = specs if specs is not None else release_tables()
    root = Path(root)
    existed = root.exists()
    conformed = _conform(tables, specs)
    # Tables read on use are spilled as the gates first read them (see `_Checksummed`), in a folder
    # of their own beside the releases, removed whatever happens.
    spill = None if isinstance(conformed, dict) else root / f".gating-{uuid.uuid4().hex[:8]}"
    # read ahead in the order the gates look tables up: those whose gates are not carried over
    ahead = [key for key in conformed if key not in (carried or {})] if READ_AHEAD else None
    ordered = _Checksummed(conformed, spill, ahead=ahead)
    try:
        return _gate_and_write(root, kind, ordered, catalogues, dates, specs,
                               model_versions=model_versions, key_is_development=key_is_development, extra=extra,
                               identifiers=identifiers, dates_of_birth=dates_of_birth, risk_rules=risk_rules,
                               check_results=check_results, gate_fingerprints=gate_fingerprints, carried=carried,
                               previous=previous, contract_held=contract_held)
    finally:
        ordered.close()
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)
            if not existed and root.is_dir() and not any(root.iterdir()):
                root.rmdir()  # a refused first release leaves no folder behind


def _gate_and_write(root: Path, kind: str, ordered: _Checksummed, catalogues: Mapping[str, Catalogue],
                    dates: list[str], specs: Mapping[tuple[str, str], ReleaseTable], *, model_versions, key_is_development,
                    extra, identifiers, dates_of_birth, risk_rules, check_results, gate_fingerprints, carried,
                    previous, contract_held=()) -> ReleaseInfo:
    """`write_release` once its arguments are checked: every gate, then the files (see the module doc)."""
    _check_catalogues(kind, {source for source, _ in ordered}, catalogues)
    gates = scan_release(kind, ordered, specs, catalogues, identifiers=identifiers, dates_of_birth=dates_of_birth,
                         risk_rules=risk_rules, carried=carried, contract_held=contract_held)
    refuse_unless_passed(kind, gates)

    reused = {key: entry for key in ordered if (entry := _reusable_file(root, previous, key, carried))}
    content = {key: reused[key]["content_sha256"] if key in reused else ordered.checksum(key) for key in ordered}
    release_id = make_release_id(kind, dates[-1], content)
    root.mkdir(parents=True, exist_ok=True)
    final = root / release_id
    staging = root / f".{release_id}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir()
        written = _write_table_files(staging, kind, release_id, ordered, content, reused)
        entries = []
        for source, name in ordered:
            entries.append({
                "source": source, "table": name, "path": table_file(source, name, kind), **written[(source, name)],
                "content_sha256": content[(source, name)],
                "gates": gates.tables[(source, name)].manifest_entry((check_results or {}).get((source, name))),
                **({"gate_fingerprint": gate_fingerprints[(source, name)]}
                   if gate_fingerprints and (source, name) in gate_fingerprints else {}),
            })
        catalogue_entries = []
        for dataset in sorted(catalogues):
            written = catalogues[dataset].write(staging / "catalogue")
            catalogue_entries.append({"dataset": dataset, **{
                fmt: p.relative_to(staging).as_posix() for fmt, p in written.items()}})
        manifest = {
            "release_id": release_id,
            "kind": kind,
            "synthetic": kind == "synthetic",
            "created_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace(
                "+00:00", "Z"),
            "extract_dates": dates,
            "model_versions": dict(sorted(model_versions.items())),
            "pseudonymisation_key": DEVELOPMENT_KEY_NOTE if key_is_development else ENVIRONMENT_KEY_NOTE,
            "key_fingerprint": key_fingerprint(),
            "gates": _gates_summary(gates),
            "tables": entries,
            "catalogues": catalogue_entries,
            "extra": dict(extra or {}),
        }
        validate_manifest(manifest)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(release_readme(manifest), encoding="utf-8")
        _swap_into_place(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_text_atomically(latest_file(root, kind), release_id + "\n")
    return ReleaseInfo(release_id, final, manifest)


def _write_table_files(staging: Path, kind: str, release_id: str, ordered: _Checksummed, content: Mapping,
                       reused: Mapping) -> dict[tuple[str, str], dict]:
    """Each table's file in `staging` (linked from the previous release when `reused` has it, else
    written, `WRITERS` at a time) -> the fields of its manifest entry. At most `WRITERS` tables' Arrow
    data are held (the spilled ones are memory-mapped), so memory is that of writing them one by one
    times `WRITERS`."""
    written: dict[tuple[str, str], dict] = {}
    pending: dict[tuple[str, str], Future] = {}

    def write(key: tuple[str, str], table: pa.Table, path: Path) -> dict:
        source, name = key
        _write_parquet(table, path, {
            "synthetic": "true" if kind == "synthetic" else "false", "kind": kind,
            "release_id": release_id, "source": source, "table": name, "content_sha256": content[key],
        })
        return {"rows": table.num_rows, "columns": table.column_names, "sha256": sha256_file(path)}

    def finish(key: tuple[str, str]) -> None:
        written[key] = pending.pop(key).result()  # raises the writer's error
        ordered.forget(key)

    with ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="release-writer") as pool:
        try:
            for key in ordered:
                path = staging / table_file(*key, kind)
                path.parent.mkdir(parents=True, exist_ok=True)
                linked = _linked(reused.get(key), path)
                if linked is not None:
                    written[key] = linked
                    continue
                while len(pending) >= WRITERS:
                    finish(next(iter(pending)))  # the oldest: files finish in about the order they start
                # read here, not in the writer: `ordered` (its tables read on use) is not thread-safe
                pending[key] = pool.submit(write, key, ordered.arrow(key), path)
            while pending:
                finish(next(iter(pending)))
        except BaseException:
            for future in pending.values():
                future.cancel()
            raise
    return written


def _reusable_file(root: Path, previous: Mapping | None, key: tuple[str, str],
                   carried: Mapping[tuple[str, str], CarriedGate] | None) -> dict | None:
    """The previous release's manifest entry of a carried table, with its file's path (None: write it)."""
    if previous is None or key not in (carried or {}):
        return None
    entry = next((t for t in previous.get("tables", []) if (t["source"], t["table"]) == key), None)
    if entry is None or not entry.get("content_sha256") or not entry.get("sha256"):
        return None
    folder = root / str(previous["release_id"])
    path = folder / entry["path"]
    if not path.is_file():
        return None
    try:
        published = (folder / MANIFEST).stat().st_mtime_ns
    except OSError:
        published = None
    return {**entry, "file": path, "file_from": entry.get("file_from") or previous["release_id"],
            "manifest_mtime_ns": published}


def _unmodified_since_published(file: Path, manifest_mtime_ns: int | None) -> bool:
    """Whether a previous release's file was last modified before that release's manifest, which is
    written after every file of its release (in its staging folder, renamed into place whole). A file
    changed in place or replaced since then is not older than the manifest (a hard link shares its
    inode's time, so a file linked from an earlier release is older still; strictly older, because file
    times advance by clock ticks of a few milliseconds: a file as old as the manifest is hashed). Then
    the checksum the manifest recorded still describes it, without reading it: hashing every carried
    file read every unchanged table's file again (~0.3 CPU s and up to 2 s of reads for each release at
    300,000 people). Checksums in a manifest are no stronger against someone who edits files and sets
    their times back: the manifest beside them can be edited as well."""
    if manifest_mtime_ns is None:
        return False
    try:
        return file.stat().st_mtime_ns < manifest_mtime_ns
    except OSError:
        return False


def _linked(entry: dict | None, path: Path) -> dict | None:
    """Hard-link (or copy) a previous release's file to `path` when its checksum is still the one its
    manifest recorded (not modified since that manifest was written, else hashed again); the fields of
    the new manifest entry, or None (the file must be written)."""
    if entry is None:
        return None
    unmodified = _unmodified_since_published(entry["file"], entry.get("manifest_mtime_ns"))
    link_or_copy(entry["file"], path)
    if not unmodified and sha256_file(path) != entry["sha256"]:  # changed since it was published: write it again
        path.unlink()
        return None
    return {"rows": entry["rows"], "columns": entry["columns"], "sha256": entry["sha256"],
            "file_from": entry["file_from"]}


def _gates_summary(gates: ReleaseGates) -> dict:
    return {
        "passed": gates.passed,
        "tables_scanned": len(gates.tables),
        "catalogue_values_scanned": gates.catalogue_values_scanned,
        "catalogue_findings": len(gates.catalogue_findings),
        "scan": "identifier shapes (PNC, CRO, postcode, prison number, CRN), withheld column names, raw names, "
                "addresses and system ids of the dataset, each row's date of birth; contracts; "
                "re-identification risk (de-identified row-level tables)",
    }


def make_release_id(kind: str, latest_extract_date: str, content: Mapping[tuple[str, str], str]) -> str:
    digest = hashlib.sha256()
    for (source, table), checksum in sorted(content.items()):
        digest.update(f"{source}/{table}:{checksum}\n".encode())
    return f"{kind}-{latest_extract_date}-{digest.hexdigest()[:8]}"


def parquet_metadata(path: Path | str) -> dict[str, str]:
    """The `datafirst.*` key-value metadata of a release file, without the prefix."""
    raw = pq.read_schema(path).metadata or {}
    return {k.decode()[len(METADATA_PREFIX):]: v.decode() for k, v in raw.items()
            if k.decode().startswith(METADATA_PREFIX)}


def _conform(tables: Mapping[tuple[str, str], pl.DataFrame],
             specs: Mapping[tuple[str, str], ReleaseTable]) -> Mapping[tuple[str, str], pl.DataFrame]:
    """Tables in spec order, each with its spec's columns in spec order."""
    unknown = sorted(f"{s}.{t}" for s, t in tables if (s, t) not in specs)
    if unknown:
        raise ReleaseError(f"tables without a release spec: {', '.join(unknown)}")
    def conform(key: tuple[str, str], frame: pl.DataFrame) -> pl.DataFrame:
        spec = specs[key]
        missing = [c for c in spec.column_names if c not in frame.columns]
        extra = [c for c in frame.columns if c not in spec.column_names]
        if missing or extra:
            raise ReleaseError(f"{key[0]}.{key[1]}: columns differ from the release spec: "
                               f"missing {missing or 'none'}, not in the spec {extra or 'none'}")
        return frame.select(spec.column_names)

    ordered_keys = [key for key in specs if key in tables]
    if isinstance(tables, dict):  # frames in memory: conform (and check) them all now
        return {key: conform(key, tables[key]) for key in ordered_keys}
    # Tables read on use (a large release): each is conformed as it is read, never all at once.
    return MappedOnUse(tables, conform, ordered_keys)  # type: ignore[return-value]


def _check_catalogues(kind: str, datasets: set[str], catalogues: Mapping[str, Catalogue]) -> None:
    missing = sorted(datasets - set(catalogues))
    if missing:
        raise ReleaseError(f"datasets without a catalogue: {', '.join(missing)}")
    mislabelled = sorted(name for name, c in catalogues.items() if c.synthetic != (kind == "synthetic"))
    if mislabelled:
        raise ReleaseError(f"catalogues labelled {'not ' if kind == 'synthetic' else ''}synthetic in a "
                           f"{kind} release: {', '.join(mislabelled)}")


def _arrow(frame: pl.DataFrame) -> pa.Table:
    # One chunk per column, so equal frames serialise to equal bytes whatever their chunking.
    return frame.rechunk().to_arrow().combine_chunks()


class _HashSink:
    """A write-only file object that hashes what is written (the Arrow stream is never held whole)."""

    def __init__(self):
        self.digest = hashlib.sha256()
        self.closed = False

    def write(self, data) -> int:
        self.digest.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class _Checksummed(Mapping):
    """`tables`, each one's content checksum (`_content_sha256`) taken the first time it is looked up:
    a table read on use (`LoadedOnUse`) is then read once for its gates and its checksum, not twice.

    With a `spill` folder, the Arrow stream the checksum is taken of is also written there, and
    `arrow(key)` reads it back memory-mapped for the table's file: the file is written after every
    gate passed (its metadata carries the release id, a hash of every table's checksum), and reading
    the table from the warehouse again, sorting and converting it cost as much as the gates' own read
    (at 50,000 people reading and sorting were a fifth of a release step's time, half of it the second read).
    The spill holds the changed tables uncompressed until each file is written.

    `ahead` (with a spill): the keys in the order the gates look them up (`scan_release`: those not
    carried, in table order). When one is looked up, the next one not yet checksummed is read, sorted
    and checksummed in a thread meanwhile (`prefetched`), while the gates scan this one: reading,
    sorting and checksumming are DuckDB's, polars' and Arrow's, run with the GIL released, and were
    over half of an incremental release step, on one core of two (steps run one at a time). What a
    key gives is what it gave when computed on lookup (the same calls on the same table; a key looked
    up out of order is computed then, the one read ahead kept for its own lookup); one more table is
    held while it is read ahead. Call `close` when done (a read still running is waited for)."""

    def __init__(self, tables: Mapping[tuple[str, str], pl.DataFrame], spill: Path | None = None,
                 ahead: list[tuple[str, str]] | None = None):
        self._tables, self._checksums, self._spill, self._spilled = tables, {}, spill, {}
        self._ahead = list(ahead or []) if spill is not None else []
        self._files = {key: n for n, key in enumerate(tables)}  # spill file names, fixed per key
        self._pending: dict[tuple[str, str], Future] = {}
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="release-reader") if self._ahead else None
        self.prefetched = 0  # lookups answered by a read ahead (tests, metadata)

    def _compute(self, key: tuple[str, str]) -> tuple[pl.DataFrame, str, Path | None]:
        """The table, its checksum and its spilled stream; changes nothing here (run in the reader too)."""
        frame = self._tables[key]
        path = None
        if self._spill is not None:
            self._spill.mkdir(parents=True, exist_ok=True)
            path = self._spill / f"{self._files[key]}.arrows"
        return frame, _content_sha256(frame, path), path

    def __getitem__(self, key: tuple[str, str]) -> pl.DataFrame:
        if key in self._checksums:
            return self._tables[key]
        pending = self._pending.pop(key, None)
        frame, checksum, path = pending.result() if pending is not None else self._compute(key)
        self.prefetched += pending is not None
        self._checksums[key] = checksum
        if path is not None:
            self._spilled[key] = path
        self._read_ahead(key)
        return frame

    def _read_ahead(self, key: tuple[str, str]) -> None:
        """Start the next key of `ahead` after `key` that is neither checksummed nor being read."""
        if self._reader is None or key not in self._ahead or self._pending:
            return
        following = self._ahead[self._ahead.index(key) + 1:]
        upcoming = next((k for k in following if k not in self._checksums and k in self._files), None)
        if upcoming is not None:
            self._pending[upcoming] = self._reader.submit(self._compute, upcoming)

    def close(self) -> None:
        """No read ahead left running (its result dropped) and the reader thread gone."""
        for pending in self._pending.values():
            pending.cancel()
        self._pending.clear()
        if self._reader is not None:
            self._reader.shutdown(wait=True)

    def checksum(self, key: tuple[str, str]) -> str:
        if key not in self._checksums:
            self[key]
        return self._checksums[key]

    def arrow(self, key: tuple[str, str]) -> pa.Table:
        """The table as its checksum was taken (`_arrow` of its frame): its spilled stream when there is one."""
        path = self._spilled.get(key)
        if path is None:
            return _arrow(self[key])
        return pa.ipc.open_stream(pa.memory_map(str(path))).read_all()

    def forget(self, key: tuple[str, str]) -> None:
        """Its spilled stream is no longer needed (its file is written): the disk space back at once."""
        path = self._spilled.pop(key, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def __iter__(self):
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)


def _content_sha256(frame: pl.DataFrame, spill: Path | None = None) -> str:
    """SHA-256 of the table's data and schema (Arrow IPC stream): equal content, equal checksum, as long
    as the frame is built the same way: the stream carries the bytes under null slots too, which Arrow
    leaves undefined (the same rows read sorted by DuckDB instead of sorted by polars differ there in a
    float column with nulls, and so gave other release ids). With
    `spill`, the stream is written there by Arrow and the checksum taken of the file, memory-mapped
    (a Python sink writing as it hashed cost more than reading the table again)."""
    table = _arrow(frame)
    if spill is None:
        sink = _HashSink()
        with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), table.schema) as writer:
            writer.write_table(table)
        return sink.digest.hexdigest()
    with pa.OSFile(str(spill), "wb") as file, pa.ipc.new_stream(file, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(pa.memory_map(str(spill)).read_buffer()).hexdigest()


def _write_parquet(table: pa.Table, path: Path, metadata: Mapping[str, str]) -> None:
    table = table.replace_schema_metadata({
        **(table.schema.metadata or {}),
        **{f"{METADATA_PREFIX}{k}".encode(): str(v).encode() for k, v in metadata.items()},
    })
    pq.write_table(table, path, compression="zstd")


def _swap_into_place(staging: Path, final: Path) -> None:
    """Rename the finished release into place, replacing an earlier one with the same id."""
    if not final.exists():
        os.rename(staging, final)
        return
    # Directories cannot be swapped in one step: move the old one aside first, restore it on failure.
    retired = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(final, retired)
    try:
        os.rename(staging, final)
    except BaseException:
        os.rename(retired, final)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def release_readme(manifest: dict) -> str:
    """README of a release folder: what it is, its tables, and how to open and join them."""
    release_id, kind = manifest["release_id"], manifest["kind"]
    synthetic = kind == "synthetic"
    present = {(t["source"], t["table"]) for t in manifest["tables"]}
    lines = [f"# {'SYNTHETIC ' if synthetic else ''}research release `{release_id}`", ""]
    if synthetic:
        lines += [
            "> **SYNTHETIC DATA.** Every table here is generated, not real records: same tables, columns, "
            "types and join keys as the de-identified release, so analysis code can be written and tested "
            "before access to the real release is granted. No finding from these tables is a finding about "
            "people. File names end in `.synthetic.parquet` and every file carries the Parquet metadata "
            "`datafirst.synthetic=true`.", "",
        ]
    else:
        lines += [
            "De-identified research tables: direct identifiers (names, addresses, free text) are withheld, "
            "system ids are keyed hashes (HMAC-SHA256), dates of birth are ages at the event and postcodes "
            "are postcode areas. The per-dataset person ids and the linking lookups join the tables.", "",
        ]
    lines += [
        f"- Made from extracts up to {manifest['extract_dates'][-1]} "
        f"({', '.join(manifest['extract_dates'])})",
        f"- Created {manifest['created_at']}; pseudonymisation key: {manifest['pseudonymisation_key']}",
        "- `manifest.json` lists every file with its rows, columns and SHA-256; `catalogue/` describes every "
        "variable (one Markdown and one HTML page per dataset).",
        "", "## Tables", "", "| dataset | table | rows | file |", "|---|---|---|---|",
    ]
    lines += [f"| {t['source']} | {t['table']} | {t['rows']:,} | `{t['path']}` |" for t in manifest["tables"]]
    lines += gates_readme(manifest)
    lines += [
        "", "## Opening the release", "",
        "Each dataset is a schema and each table a view, so the SQL below runs unchanged on the "
        "de-identified and the synthetic release:", "",
        "```bash",
        f"datafirst release-sql --release {release_id_path_hint(release_id)} "
        "\"SELECT count(*) FROM magistrates.hocas_flatfile\"",
        f"datafirst release-sql --kind {kind} \"SELECT * FROM linking.xjs_lookup LIMIT 5\"   "
        f"# latest {kind} release",
        "```", "",
        "```python",
        "from datafirst_assets.release import open_release",
        f"con = open_release(\"{release_id_path_hint(release_id)}\")   # in-memory DuckDB",
        "df = con.sql(\"SELECT * FROM magistrates.hocas_flatfile\").pl()",
        "```", "",
        "Without the package, any Parquet reader works, e.g. DuckDB: "
        f"`SELECT * FROM read_parquet('{table_file('magistrates', 'hocas_flatfile', kind)}')`.",
        "", "## Joining tables", "",
        "Within a dataset, child tables join their parent on the parent's hashed id (e.g. "
        "`hocas_all_offence.defendant_case_id_hash = hocas_flatfile.defendant_case_id_hash`). "
        "Across datasets, join each table's person id to `linking.xjs_lookup` (`source_dataset`, "
        "`dataset_person_id`) and compare `xjs_person_id_high`, `_medium` or `_low` (the match threshold: "
        "high is strictest; the levels nest). "
        "Magistrates' cases join Crown Court cases through `linking.case_lookup`.", "",
    ]
    for example in example_queries():
        if not set(example.tables) <= present:
            continue
        lines += [f"### {example.title}", "", example.explanation, "",
                  "```sql", example.sql.strip(), "```", ""]
    return "\n".join(lines)


def gates_readme(manifest: dict) -> list[str]:
    """The README's summary of the gates every table passed before it was published."""
    gates = manifest.get("gates")
    if not gates:
        return []
    lines = [
        "", "## Gates passed before publishing", "",
        f"Every table and every catalogue value was scanned again for identifiers ({gates['scan']}); "
        f"{gates['tables_scanned']} tables and {gates['catalogue_values_scanned']:,} catalogue values, "
        f"{gates['catalogue_findings']} finding(s). A release with any finding is refused, so every row below "
        f"passed. Pseudonymisation key fingerprint: `{manifest.get('key_fingerprint', '-')}`.", "",
        "| dataset | table | identifiers found | contract | mean re-identification risk | sample uniques | checks |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in manifest["tables"]:
        g = t.get("gates", {})
        risk = g.get("disclosure", {})
        checks = g.get("checks") or {}
        shown = ", ".join(f"{name} {'passed' if ok else 'FAILED'}" for name, ok in checks.items()) or "-"
        lines.append(
            f"| {t['source']} | {t['table']} | {g.get('no_identifiers', {}).get('findings', '-')} | "
            f"{'holds' if g.get('contract', {}).get('passed') else 'BROKEN'} | "
            f"{risk.get('mean_risk', 'n/a')} | {risk.get('sample_uniques', 'n/a')} | {shown} |")
    return lines


def release_id_path_hint(release_id: str) -> str:
    return f"data/releases/{release_id}"
