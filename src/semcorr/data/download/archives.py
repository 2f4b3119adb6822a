"""Safe extraction of the downloaded zip and tar archives (no absolute paths, no ``..``, no links)."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from semcorr.errors import SemcorrError

#: Bytes read and written at a time (downloads, checksums, extraction).
CHUNK = 1 << 20
_SKIP_NAMES = {"__MACOSX", ".DS_Store", "Thumbs.db"}


class DownloadError(SemcorrError):
    """A download failed: offline, HTTP error, checksum mismatch, unsafe or unexpected archive."""


def _member_target(name: str, root: Path, strip: str | None) -> Path | None:
    """Where an archive member goes under ``root``; None to skip it. Rejects unsafe names."""
    clean = name.replace("\\", "/")
    pure = PurePosixPath(clean)
    if clean.startswith("/") or (pure.parts and pure.parts[0].endswith(":")) or ".." in pure.parts:
        raise DownloadError(f"Refusing to extract unsafe archive member {name!r} (absolute path or '..').")
    parts = [p for p in pure.parts if p not in ("", ".")]
    if not parts or any(p in _SKIP_NAMES or p.startswith("._") for p in parts):
        return None
    if strip:
        prefix = [p for p in PurePosixPath(strip).parts if p not in ("", ".")]
        if parts[: len(prefix)] == prefix:
            parts = parts[len(prefix):]
            if not parts:
                return None
    target = root.joinpath(*parts)
    base = root.resolve()
    if base != target.resolve() and base not in target.resolve().parents:
        raise DownloadError(f"Refusing to extract archive member {name!r} outside {root}.")
    return target


def extract(archive: Path, root: Path, strip: str | None = None) -> int:
    """Extract a zip or tar archive into ``root`` safely; return the number of files written.

    Members with absolute paths or ``..`` raise :class:`DownloadError`; links, devices and macOS
    metadata (``__MACOSX``, ``._*``, ``.DS_Store``) are skipped; a leading ``strip`` folder is removed.
    """
    root.mkdir(parents=True, exist_ok=True)
    count = 0
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                target = _member_target(info.filename, root, strip)
                mode = (info.external_attr >> 16) & 0o170000
                if target is None or mode == 0o120000:  # skipped or symlink
                    continue
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                count += 1
        return count
    try:
        tf = tarfile.open(archive)
    except tarfile.TarError as exc:
        raise DownloadError(f"{archive} is neither a zip nor a tar archive ({exc}); delete it and download again.") from exc
    with tf:
        for member in tf:
            target = _member_target(member.name, root, strip)
            if target is None or not (member.isfile() or member.isdir()):
                continue
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(member)
            if src is None:
                continue
            with src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            count += 1
    return count
