"""Low-fidelity synthetic versions of every release table, and how they compare with the real ones.

    doc = summarise_release(release)                 # summaries.py: disclosure-checked marginals (JSON)
    tables = synthesise_release(doc, seed=0)         # generate.py: same tables, columns, types and joins
    report = evaluate_synthetic(release, tables, doc) # report.py: shape, integrity, DCR, replicated uniques
    differences_note(doc)                            # notes.py: how the synthetic data differs (Markdown)

Generation reads only the summaries document, never the real rows: what a reviewer approved is
all that flows into the synthetic tables. fabricate.py makes release-shaped stand-in tables
for tests and benchmarks.
"""
