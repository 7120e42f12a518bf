"""Test-wide settings.

The suite runs on simulated data with the public development pseudonymisation key, which a
release refuses unless told this is a test or a demo (keys fail closed; see deidentify/keys.py).
Set at import so every xdist worker and every in-process Dagster run sees it.
"""

import os

from datafirst_assets.deidentify.keys import ALLOW_DEVELOPMENT_KEY_ENV

os.environ[ALLOW_DEVELOPMENT_KEY_ENV] = "1"
