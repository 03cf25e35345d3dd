"""After a confirmed upload: keep the file, archive it (quota, oldest out first) or delete it."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from agent.files import suffixed_name
from agent.logs import emit
from agent.tracker import Identity


class Disposer:
    """Applies the after-upload action; never touches a file whose size or mtime changed since upload."""

    def __init__(self, mode: str, watch: Path, archive: Path, quota_bytes: int) -> None:
        self.mode = mode
        self.watch = watch
        self.archive = archive
        self.quota_bytes = quota_bytes
        self._lock = threading.Lock()
        self._archive_bytes: int | None = None

    def dispose(self, path: str, identity: Identity, date: str, sha256: str) -> str | None:
        """Apply the action; returns what was done, or None if the file changed and needs another look."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return "missing"
        if (st.st_size, st.st_mtime_ns) != identity:
            return None
        if self.mode == "keep":
            return "kept"
        if self.mode == "delete":
            os.unlink(path)
            return "deleted"
        return self._archive_file(Path(path), st.st_size, date, sha256)

    def _archive_file(self, src: Path, size: int, date: str, sha256: str) -> str:
        try:
            rel = src.relative_to(self.watch)
        except ValueError:
            rel = Path(src.name)
        dest = self.archive / date / rel
        if dest.exists():
            dest = dest.with_name(suffixed_name(dest.name, sha256))
        if dest.exists():
            dest = dest.with_name(suffixed_name(dest.name, sha256, 64))
        dest.parent.mkdir(parents=True, exist_ok=True)
        # shutil.move falls back to copy+delete across file systems; mtime is kept, so "oldest" stays true.
        shutil.move(src, dest)
        with self._lock:
            if self._archive_bytes is None:
                self._archive_bytes = self._measure()
            else:
                self._archive_bytes += size
            if self.quota_bytes and self._archive_bytes > self.quota_bytes:
                self._prune()
        return f"archived:{dest}"

    def _files(self) -> list[tuple[float, int, Path]]:
        out = []
        for root, _dirs, files in os.walk(self.archive):
            for name in files:
                p = Path(root) / name
                try:
                    st = p.lstat()
                except OSError:
                    continue
                out.append((st.st_mtime, st.st_size, p))
        return out

    def _measure(self) -> int:
        return sum(size for _m, size, _p in self._files())

    def _prune(self) -> None:
        """Delete the oldest archived files until 90 % of the quota (hysteresis keeps prunes rare)."""
        files = sorted(self._files())
        total = sum(size for _m, size, _p in files)
        target = int(self.quota_bytes * 0.9)
        removed = freed = 0
        for _mtime, size, p in files:
            if total <= target:
                break
            try:
                p.unlink()
            except OSError as exc:
                emit(30, "archive prune could not delete", path=str(p), error=str(exc))
                continue
            total -= size
            removed += 1
            freed += size
            parent = p.parent
            while parent != self.archive and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        self._archive_bytes = total
        emit(
            20,
            "archive over quota: oldest files removed",
            removed=removed,
            freed_bytes=freed,
            archive_bytes=total,
            quota_bytes=self.quota_bytes,
        )
