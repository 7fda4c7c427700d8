"""Atomic file writes and file hashing: the one writer every spectdl output goes through.

A file is written under a temporary name in the target folder and renamed over the target when
complete. The rename is atomic on one file system, so a reader never sees a half-written file and
a crash leaves the old file (or none). With ``fsync=True`` the data is also durable before the
rename and the rename is durable after it, so even a power loss leaves the old file or the new one,
never a name pointing at missing blocks; checkpoints and simulation shards use it, being files whose
loss or truncation would silently corrupt a training run or a data set.

Every output, checkpoints included, gets the permissions any new file of the user gets
(``0o666`` minus the umask), not the private ``0o600`` of a raw ``mkstemp`` file.

:func:`atomic_write` serves writers that produce a file in one call; :class:`AtomicFile` serves
those that fill it over many calls (an HDF5 shard written block by block).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

from spectdl.errors import InputError

__all__ = ["AtomicFile", "atomic_write", "check_output_folder", "check_outputs", "file_sha256"]


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _fsync_file(path: Path) -> None:
    # Reopened for writing: Windows refuses fsync on a read-only descriptor.
    with open(path, "r+b") as fh:
        os.fsync(fh.fileno())


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open folders; its renames are journalled
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems do not sync folders
        pass
    finally:
        os.close(fd)


class AtomicFile:
    """A temporary file beside ``path`` that becomes ``path`` on :meth:`commit`.

    :attr:`tmp` is created at once (empty); write it by any means, then call :meth:`commit`, or
    :meth:`abort` to delete it. Used as a context manager it aborts on leaving the block unless
    committed, so an exception never leaves a temporary behind.

    Args:
        path: the final file.
        overwrite: whether an existing ``path`` may be replaced. Without it, ``path`` must not exist
            now, and a file that appears under that name while writing is never clobbered (the
            commit is a hard link, which fails if the name is taken).
        suffix: appended to the temporary name (``.nii.gz`` for writers that choose the format by
            the file name).
        protected: paths ``path`` may never be (the inputs of the operation).
        fsync: make the data durable before the rename and the rename durable after it.
    """

    def __init__(self, path: str | Path, *, overwrite: bool = False, suffix: str = "",
                 protected: tuple[Path, ...] = (), fsync: bool = False):
        self.path = Path(path)
        self.overwrite = bool(overwrite)
        self.fsync = bool(fsync)
        resolved = self.path.resolve()
        for p in protected:
            if Path(p).resolve() == resolved:
                raise InputError(f"{self.path}: is an input of this operation; refusing to overwrite it "
                                 "(choose another output)")
        if self.path.exists() and not self.overwrite:
            raise InputError(f"{self.path}: already exists; pass overwrite=True to replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=f".tmp{suffix}", dir=str(self.path.parent))
        os.close(fd)
        self.tmp: Path | None = Path(name)

    def commit(self) -> Path:
        """Rename the temporary file to :attr:`path` and return it; on any failure the temporary
        file is deleted and the old ``path`` (if any) is left as it was."""
        tmp = self.tmp
        if tmp is None:
            raise InputError(f"{self.path}: this temporary file was already committed or aborted; expected a new AtomicFile")
        try:
            if self.fsync:
                _fsync_file(tmp)
            # mkstemp creates 0600 files; give the output the permissions any new file would get.
            os.chmod(tmp, 0o666 & ~_umask())
            if self.overwrite:
                os.replace(tmp, self.path)
            else:
                self._link_new(tmp)
            self.tmp = None
        except BaseException:
            self.abort()
            raise
        if self.fsync:
            _fsync_folder(self.path.parent)
        return self.path

    def _link_new(self, tmp: Path) -> None:
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            raise InputError(f"{self.path}: appeared while writing; not overwritten (pass overwrite=True to "
                             "replace it)") from None
        except OSError:
            # File systems without hard links: accept the small race of check-then-rename.
            if self.path.exists():
                raise InputError(f"{self.path}: already exists; pass overwrite=True to replace it") from None
            os.replace(tmp, self.path)
            return
        tmp.unlink()

    def abort(self) -> None:
        """Delete the temporary file (idempotent)."""
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, *exc) -> None:
        self.abort()


def atomic_write(path: str | Path, write: Callable[[Path], object], *, overwrite: bool = False,
                 suffix: str = "", protected: tuple[Path, ...] = (), fsync: bool = False) -> Path:
    """Call ``write(tmp_path)`` and rename ``tmp_path`` to ``path``; returns ``path``.

    ``path`` must not exist unless ``overwrite`` is true, and it may never be one of ``protected``
    (the inputs of the operation). ``fsync=True`` makes the new file survive a power loss once this
    returns (see the module docstring). If ``write`` raises, the temporary file is deleted and the
    old ``path`` is untouched.
    """
    with AtomicFile(path, overwrite=overwrite, suffix=suffix, protected=protected, fsync=fsync) as target:
        write(target.tmp)
        return target.commit()


def check_outputs(outputs, inputs, *, option: str = "-o") -> None:
    """Refuse any output path that is, or lies inside, one of ``inputs`` (InputError naming both).

    Call it before writing anything. ``outputs`` are the paths a command will create or replace
    (files or folders, existing or not); ``inputs`` the files and folders it reads. Paths are
    compared resolved (symbolic links followed), so ``a/../b`` and a link to an input are caught.
    ``option`` names the argument at fault in the message.
    """
    resolved_inputs = [(Path(p), Path(p).resolve()) for p in inputs if p is not None]
    for out in outputs:
        if out is None:
            continue
        o = Path(out).resolve()
        for p, r in resolved_inputs:
            if o == r or r in o.parents:
                raise InputError(f"{option}: {out} is, or lies inside, the input {p}; refusing to write over an "
                                 "input (choose an output outside the inputs)")


def check_output_folder(out: str | Path, *, option: str = "-o", expected: str = "a folder for the outputs") -> None:
    """An output folder must be a folder or not exist yet (InputError naming ``option``)."""
    if Path(out).exists() and not Path(out).is_dir():
        raise InputError(f"{option}: {out} exists and is not a folder; expected {expected}")


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks so large files need little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
