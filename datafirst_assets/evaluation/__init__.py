"""Evaluation: the only stage that reads the simulator's ground truth.

Nothing that builds a release imports this package; its assets (group ``evaluation``) read the
truth folder named by the ``truth`` resource (``DATAFIRST_TRUTH_DIR``), measure linkage,
cross-justice and case-link accuracy against it, and compare the pipeline's own estimates with
what was measured. The simulated clerical reviewer (``datafirst simulate-review``) lives here too:
it reads truth to fill in the review queue, as people would, into ``labels/<source>.csv``.
"""
