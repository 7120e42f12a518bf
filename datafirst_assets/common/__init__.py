"""Small helpers every stage uses, one module per kind of thing they hold:

- ``tables``: frames as text (Markdown tables for asset metadata and reports)
- ``hashing``: file checksums
- ``pairs``: pair ordering (each pair with the smaller record id on the left)
- ``checks``: readable check results (pandera failures summarised)
- ``partitions``: working across extract-date partitions (a record's latest version)

Nothing here knows about a source system, a stage or Dagster's internals.
"""
