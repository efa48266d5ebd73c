"""The last model file that loaded, kept per served name, so that a broken swap keeps the old model serving.

Swapping a model file and sending ``kill -HUP`` to the master makes gunicorn start new workers,
which load the file again. If the new file is broken, those workers would come up without the
model and answer 503 while the old workers are gone. Instead, each worker that loads an ``.onnx``
model keeps a copy of the file (and its profile sidecar) in a directory the master made before
forking (``SPECKS_LAST_GOOD_DIR``); a worker whose file fails to load logs why and loads the kept
copy, and ``GET /models`` keeps showing the old file's sha256, so the operator sees the swap did not
take. Outside ``specks serve`` (no directory named) nothing is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

LAST_GOOD_DIR_ENV = "SPECKS_LAST_GOOD_DIR"


def prepare_last_good_dir() -> Path:
    """Make the directory and name it in ``SPECKS_LAST_GOOD_DIR`` (in the master, before the fork)."""
    path = Path(tempfile.mkdtemp(prefix="specks-last-good-"))
    os.environ[LAST_GOOD_DIR_ENV] = str(path)
    return path


def _kept_path(name: str) -> Path | None:
    directory = os.environ.get(LAST_GOOD_DIR_ENV)
    if not directory or not Path(directory).is_dir():
        return None
    safe = hashlib.sha256(name.encode()).hexdigest()[:16]  # served names are client-visible, not file names
    return Path(directory) / f"{safe}.onnx"


def keep(name: str, path: str | None) -> None:
    """After ``path`` loaded as model ``name``: keep a copy of it and its profile (unless the same bytes are kept)."""
    # Imported here: the gunicorn master imports this module, and only for the directory.
    from ..models.profiles import PROFILE_SUFFIX

    kept = _kept_path(name)
    if kept is None or path is None or not path.lower().endswith(".onnx"):
        return
    source = Path(path)
    with contextlib.suppress(OSError):
        if not (kept.is_file() and _sha256(kept) == _sha256(source)):
            _copy_atomically(source, kept)
        sidecar = source.with_name(source.name + PROFILE_SUFFIX)
        kept_sidecar = kept.with_name(kept.name + PROFILE_SUFFIX)
        if sidecar.is_file():
            _copy_atomically(sidecar, kept_sidecar)
        else:
            kept_sidecar.unlink(missing_ok=True)


def kept_copy(name: str) -> Path | None:
    """The kept copy of the last file that loaded as model ``name``, if there is one."""
    kept = _kept_path(name)
    return kept if kept is not None and kept.is_file() else None


def _copy_atomically(source: Path, destination: Path) -> None:
    """Copy so that a sibling worker never reads a half-written file."""
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=destination.name + ".")
    os.close(handle)
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, destination)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
