"""Benchmark: the release steps (and optionally the catalogue steps) alone, on a copy of a workdir of
bench_incremental_graph.py (it changes the copy: a new release, LATEST_<kind>, run records).

    .venv/bin/python benchmarks/bench_release_steps.py WORKDIR --previous <deidentified id> <synthetic id>
        [--mode incremental|full] [--catalogues] [--kinds deidentified,synthetic] [--profile OUT.prof]
        [--as-code-of PACKAGE_DIR]

After an incremental benchmark run, `--previous` sets LATEST_<kind> back to the full run's releases, so
the release step sees exactly what the incremental run's release step saw. `--as-code-of` fingerprints
with the code version of another copy of the package (e.g. the code that made the workdir), so another
version of the code is measured on the same carried gates and stored catalogues (an A/B: run one code
from a `git archive` on PYTHONPATH, the other from the worktree). Prints process CPU (user + system),
system CPU and wall seconds per step; `POLARS_MAX_THREADS=1 DATAFIRST_DUCKDB_THREADS=1` gives steadier
CPU figures on a shared machine.
"""
import argparse
import cProfile
import os
import resource
import sys
import time
from pathlib import Path


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sys_cpu() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--mode", default="incremental")
    ap.add_argument("--catalogues", action="store_true")
    ap.add_argument("--kinds", default="deidentified,synthetic")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--previous", nargs=2, default=None)
    ap.add_argument("--as-code-of", default=None, help="package folder whose code version fingerprints use")
    args = ap.parse_args()
    args.workdir = args.workdir.resolve()
    data = args.workdir / "data"
    os.environ["DAGSTER_HOME"] = str(args.workdir / "dagster_home")
    os.environ["DATAFIRST_ALLOW_DEVELOPMENT_KEY"] = "1"
    os.environ.pop("DATAFIRST_TRUTH_DIR", None)
    if args.previous:
        for kind, rid in zip(("deidentified", "synthetic"), args.previous):
            (data / "releases" / f"LATEST_{kind}").write_text(rid + "\n")
    if args.as_code_of:
        import hashlib
        from datafirst_assets.warehouse import content
        package = Path(args.as_code_of)
        digest = hashlib.sha256()
        for path in sorted(package.rglob("*.py")):
            digest.update(path.relative_to(package).as_posix().encode())
            digest.update(path.read_bytes())
        fixed = digest.hexdigest()[:16]
        content.code_version = lambda: fixed
        from datafirst_assets.warehouse import unchanged
        from datafirst_assets.deidentify import by_row
        unchanged.code_version = by_row.code_version = content.code_version
        print("code version fixed to", fixed, flush=True)
    from dagster import AssetKey, AssetSelection, DagsterInstance, materialize
    import datafirst_assets
    print("code:", datafirst_assets.__file__, flush=True)
    from datafirst_assets.definitions import build_definitions
    from datafirst_assets.defs.linkage import run_config_for_mode
    from datafirst_assets.deidentify.release_spec import release_datasets
    defs = build_definitions(data)
    assets = list(defs.assets)
    resources = defs.resources
    linkage = resources["linkage"]
    config = run_config_for_mode(linkage, args.mode)
    instance = DagsterInstance.get()
    profiler = cProfile.Profile() if args.profile else None
    for kind in args.kinds.split(","):
        steps = []
        if args.catalogues:
            keys = [AssetKey(["catalogue", d] if kind == "deidentified" else ["catalogue", kind, d])
                    for d in release_datasets()]
            steps.append((f"catalogues/{kind}", keys))
        steps.append((f"release/{kind}", [AssetKey(["release", kind])]))
        for name, keys in steps:
            c0, s0, w0 = cpu(), sys_cpu(), time.perf_counter()
            if profiler:
                profiler.enable()
            result = materialize(assets, selection=AssetSelection.keys(*keys), instance=instance,
                                 resources=resources, run_config=config, raise_on_error=True)
            if profiler:
                profiler.disable()
            print(f"STEP {name:28} cpu {cpu() - c0:7.2f} s  wall {time.perf_counter() - w0:7.2f} s  "
                  f"sys {sys_cpu() - s0:5.2f} ok={result.success}", flush=True)
            for event in result.get_asset_materialization_events():
                md = event.materialization.metadata
                shown = {k: getattr(v, 'value', v) for k, v in md.items()
                         if k in ("release_id", "tables_read", "catalogues_reused", "gates_passed")
                         or k.startswith("gate")}
                if shown:
                    print("   ", event.asset_key.to_user_string(), shown, flush=True)
    if profiler:
        profiler.dump_stats(args.profile)


if __name__ == "__main__":
    sys.exit(main())
