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
    """The URL of a file under `data_root` on the local file server; a `file://` URL for a file
    outside the served folders (still a link, for a browser on the same machine)."""
    path = Path(path).resolve()
    try:
        relative = path.relative_to(Path(data_root).resolve())
    except ValueError:
        return path.as_uri()
    if not relative.parts or relative.parts[0] not in SERVED_FOLDERS:
        return path.as_uri()
    base = os.environ.get(FILES_URL_ENV, DEFAULT_FILES_URL).rstrip("/")
    return f"{base}/{quote(relative.as_posix())}"
