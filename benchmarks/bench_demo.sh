#!/bin/bash
# `make demo`'s four commands against DATA=$1 (a fresh folder), each under benchmarks/reaptime.py:
# wall and CPU time of the command's whole process tree, the runs launched through the code
# location included (a child subreaper reaps them, so their CPU counts).
#   benchmarks/bench_demo.sh /tmp/demo_bench
set -e
REPO=$(cd "$(dirname "$0")/.." && pwd); DATA=$1; V=$REPO/.venv/bin
cd /tmp  # not the repo: `python -m dagster` would put the working directory first on sys.path
export DAGSTER_HOME=$DATA/.dagster_home DATAFIRST_TRUTH_DIR=$DATA.truth DATAFIRST_ALLOW_DEVELOPMENT_KEY=1
rm -rf "$DATA" "$DATA.truth"; mkdir -p "$DAGSTER_HOME"; cp "$REPO/data/config/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
R="$V/python $REPO/benchmarks/reaptime.py"
$R $V/datafirst simulate --people 10000 --seed 42 --extracts 3 --malformed-rate 0.002 --out $DATA/landing --truth $DATAFIRST_TRUTH_DIR > $DATA.log1 2>&1; grep REAPTIME $DATA.log1
DATAFIRST_LAUNCH=code_location $R $V/datafirst run --data-dir $DATA --review-queues-only > $DATA.log2 2>&1; grep REAPTIME $DATA.log2
$R $V/datafirst simulate-review --data-dir $DATA --truth-dir $DATAFIRST_TRUTH_DIR > $DATA.log3 2>&1; grep REAPTIME $DATA.log3
DATAFIRST_LAUNCH=code_location $R $V/datafirst run --data-dir $DATA --link-only > $DATA.log4 2>&1; grep REAPTIME $DATA.log4
