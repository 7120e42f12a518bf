# datafirst: `make demo` runs the whole pipeline on simulated data, `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DATA := data
export DAGSTER_HOME := $(abspath $(DATA)/.dagster_home)
DEMO_PEOPLE ?= 10000
DEMO_SEED ?= 42
DEMO_EXTRACTS ?= 3
# The simulator's truth lives outside the data folder: only the evaluation stage reads it
# (through DATAFIRST_TRUTH_DIR) and the simulated reviewer labels from it.
TRUTH ?= evaluation/truth
export DATAFIRST_TRUTH_DIR ?= $(abspath $(TRUTH))
# A few rows per thousand written malformed, so the quarantine and its reasons show in the demo.
DEMO_MALFORMED_RATE ?= 0.002

.PHONY: install demo test ui backfill clean-data snapshot

# The demo works on simulated people with the public development pseudonymisation key; a release
# is refused with that key unless this says it is a demo (real use: set DATAFIRST_PSEUDONYMISATION_KEY).
demo ui backfill: export DATAFIRST_ALLOW_DEVELOPMENT_KEY = 1

$(BIN)/datafirst: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# pip compiles the installed packages but not this editable one; where PYTHONDONTWRITEBYTECODE is
	# set, every process (command line, code server, each run) would compile it again (~0.3 s each)
	$(BIN)/python -m compileall -q datafirst_assets
	touch $@

install: $(BIN)/datafirst

$(DAGSTER_HOME)/dagster.yaml: $(DATA)/config/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp $< $@

# simulate; link each dataset as far as its clerical review queue; a simulated reviewer labels
# the queues into data/labels/ (where people's labels go); re-link with the labels' thresholds,
# publish, and measure against the truth in the evaluation stage. `datafirst demo` runs these four
# commands, each also a command of its own, in one process with one code server for all their runs:
#   datafirst simulate --people N --seed S --extracts K --malformed-rate R --out data/landing --truth T
#   DATAFIRST_LAUNCH=code_location datafirst run --data-dir data --review-queues-only
#   datafirst simulate-review --data-dir data --truth-dir T
#   DATAFIRST_LAUNCH=code_location datafirst run --data-dir data --link-only
demo: install $(DAGSTER_HOME)/dagster.yaml
	rm -rf $(DATA)/landing $(DATA)/truth $(DATA)/labels $(DATAFIRST_TRUTH_DIR)
	DATAFIRST_LAUNCH=code_location $(BIN)/datafirst demo --people $(DEMO_PEOPLE) --seed $(DEMO_SEED) --extracts $(DEMO_EXTRACTS) --malformed-rate $(DEMO_MALFORMED_RATE) --data-dir $(DATA) --truth $(DATAFIRST_TRUTH_DIR)

test: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

# Rewrite the pinned asset graph (datafirst_assets_tests/snapshots/definitions.yaml) after an intended change
snapshot: install
	$(BIN)/python -m datafirst_assets_tests.definitions_snapshot

ui: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/datafirst ui --data-dir $(DATA) --port 3000 --files-port 3001

# Re-load every extract dated FROM..TO (inclusive) in one run, then link: make backfill FROM=2024-01-31 TO=2024-03-31
backfill: install $(DAGSTER_HOME)/dagster.yaml
	@test -n "$(FROM)" -a -n "$(TO)" || { echo "usage: make backfill FROM=YYYY-MM-DD TO=YYYY-MM-DD"; exit 2; }
	DATAFIRST_LAUNCH=code_location $(BIN)/datafirst backfill --data-dir $(DATA) --from $(FROM) --to $(TO)

clean-data:
	rm -rf $(DATA)/landing $(DATA)/truth $(DATA)/warehouse.duckdb* $(DATA)/reports $(DATA)/models $(DATA)/.dagster_home \
		$(DATA)/labels $(DATA)/review $(DATAFIRST_TRUTH_DIR)
