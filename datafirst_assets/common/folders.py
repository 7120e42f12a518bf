"""Files and folders replaced whole: written beside their final place, then swapped in."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def replace_folder(final: Path, write: Callable[[Path], None]) -> Path:
    """Replace ``final`` with a folder ``write`` fills. A reader never sees a half-written folder
    (the files are written in a hidden sibling first) and a failure leaves the old one as it was;
    ``write`` should write the file that marks the folder complete (e.g. its fingerprint) last."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        write(staging)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def write_text_atomically(path: Path, text: str) -> None:
    """Replace the file ``path`` with ``text``: a reader sees the old file or the new, never part of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def link_or_copy(source: Path, target: Path) -> None:
    """``source`` hard-linked as ``target`` (no bytes copied), or copied where links are not possible
    (another file system, links not allowed). Raises OSError if neither can be done."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
