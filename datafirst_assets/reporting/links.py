"""Links from asset metadata to files under the data folder, opened in a browser.

`make ui` serves the data folder's report, model, catalogue and release folders on a local port
(`python -m datafirst_assets.reporting.serve`), so a report or chart is one click from its asset.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

FILES_URL_ENV = "DATAFIRST_FILES_URL"
DEFAULT_FILES_URL = "http://127.0.0.1:3001"
SERVED_FOLDERS = ("reports", "models", "catalogues", "releases", "synthetic")


def file_url(path: Path | str, data_root: Path | str) -> str:
    """The URL of a file under `data_root` on the local file server (served folders only)."""
    relative = Path(path).resolve().relative_to(Path(data_root).resolve())
    if relative.parts[0] not in SERVED_FOLDERS:
        raise ValueError(f"{relative} is not in a served folder ({', '.join(SERVED_FOLDERS)})")
    base = os.environ.get(FILES_URL_ENV, DEFAULT_FILES_URL).rstrip("/")
    return f"{base}/{quote(relative.as_posix())}"
