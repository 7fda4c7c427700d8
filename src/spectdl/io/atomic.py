"""Atomic file writes: write to a temporary name in the target folder, then rename over the target."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from spectdl.errors import InputError


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write(path: str | Path, write: Callable[[Path], object], *, overwrite: bool = False,
                 suffix: str = "", protected: tuple[Path, ...] = ()) -> Path:
    """Call ``write(tmp_path)`` and rename ``tmp_path`` to ``path``.

    The rename is atomic on one file system, so a reader never sees a half-written file and a
    crash leaves the old file (or none). ``path`` must not exist unless ``overwrite`` is true, and
    it may never be one of ``protected`` (the inputs of the operation).
    """
    path = Path(path)
    resolved = path.resolve()
    for p in protected:
        if Path(p).resolve() == resolved:
            raise InputError(f"{path}: is an input of this operation; refusing to overwrite it (choose "
                             "another output)")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=str(path.parent))
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp creates 0600 files; give the output the permissions any new file would get.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
