"""Output folders written whole or not at all: :class:`OutputDir` (a hidden temporary
folder moved into place on success) and the ``.emoreel-files`` manifest that limits what
``--force`` may replace to emoreel's own files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import OutputError
from ..results import hold_lock


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


OUTPUT_MANIFEST = ".emoreel-files"  # what emoreel wrote into an extract folder: all that --force may remove


def _foreign_files(folder: Path) -> list[str]:
    """Files (and links, folders) in ``folder`` that its emoreel manifest does not list."""
    try:
        own = set((folder / OUTPUT_MANIFEST).read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError):
        own = set()
    own.add(OUTPUT_MANIFEST)
    out = []
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder).as_posix()
        if f.is_symlink() or (f.is_file() and rel not in own) or (not f.is_file() and not f.is_dir()):
            out.append(rel)
        elif f.is_dir() and not any(o.startswith(rel + "/") for o in own):
            out.append(rel + "/")
    return out


class OutputDir:
    """Write into a hidden temporary folder beside ``path``, moved into place only on success.

    An existing non-empty ``path`` is refused without ``force`` (and replaced as a
    whole with it). ``protect`` lists paths (the results folder, the video) that
    ``path`` must not be or contain.
    """

    def __init__(self, path: str | Path, force: bool = False, protect: tuple[Path, ...] = ()):
        self.path = Path(path)
        self.lock_fd = None
        for p in protect:
            if _inside(Path(p), self.path):
                raise OutputError(f"output folder {self.path} would replace {p}; choose another folder")
        self._lock()
        try:
            self._prepare(force)
        except BaseException:
            self._unlock()
            raise

    def _lock(self) -> None:
        """``flock`` on a hidden file beside the folder: a second extract into it is refused, not interleaved."""
        lock = self.path.with_name(f".{self.path.name}.lock")
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create {self.path}: {e.strerror}") from None
        while True:
            fd = hold_lock(lock, lambda who: f"output folder {self.path} is in use by another emoreel{who}; "
                                             "wait for it to finish or choose another folder")  # fmt: skip
            if fd is None:  # no flock here
                return
            try:
                same = os.fstat(fd).st_ino == os.stat(lock).st_ino  # not a lock file its holder removed meanwhile
            except OSError:
                same = False
            if same:
                self.lock_fd, self.lock_path = fd, lock
                return
            os.close(fd)

    def _unlock(self) -> None:
        if self.lock_fd is not None:
            try:
                self.lock_path.unlink(missing_ok=True)  # while still held: a waiting run sees a new file
            except OSError:
                pass
            os.close(self.lock_fd)
            self.lock_fd = None

    def _prepare(self, force: bool) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"output {self.path} exists and is not a folder")
        if self.path.exists() and any(self.path.iterdir()) and not force:
            raise OutputError(f"output folder {self.path} is not empty; use --force to replace it")
        if self.path.exists() and force:
            foreign = _foreign_files(self.path)
            if foreign:
                raise OutputError(f"output folder {self.path} holds files emoreel did not write ({foreign[0]}"
                                  f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}); "
                                  "--force only replaces emoreel's own output: choose another folder")  # fmt: skip
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        try:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir(parents=True)
        except OSError as e:
            raise OutputError(f"cannot create {self.path}: {e.strerror}") from None

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._finish(exc_type)
        finally:
            self._unlock()

    def _finish(self, exc_type) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            files = sorted(f.relative_to(self.tmp).as_posix() for f in self.tmp.rglob("*") if f.is_file())
            (self.tmp / OUTPUT_MANIFEST).write_text("".join(f + "\n" for f in files), encoding="utf-8")
            if self.path.exists():
                old = self.path.with_name(f".{self.path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(self.path, old)
                os.replace(self.tmp, self.path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(self.tmp, self.path)
        except OSError as e:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise OutputError(f"cannot move the output into {self.path}: {e.strerror}") from None
