"""Getting a dataset onto disk: stream each file with a progress bar (resumable ``.part`` files,
mirrors tried in order), verify its checksums, extract archives (:mod:`.archives`), run the
catalogue's post-extraction step, and record what was installed in ``DIR/.semcorr_download.json``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from .archives import CHUNK, DownloadError, extract
from .catalogue import DatasetSpec, Resource, get_spec

log = logging.getLogger(__name__)

TIMEOUT = 60.0
USER_AGENT = "semcorr-download/0.1 (+python urllib)"
MARKER = ".semcorr_download.json"


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file (streamed)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, res: Resource) -> str:
    """Check ``path`` against the published checksums; return its sha256.

    Raises:
        DownloadError: a checksum does not match (the file is removed).
    """
    sha256 = file_digest(path, "sha256")
    expected = [("sha256", res.sha256, sha256)]
    if res.md5:
        expected.append(("md5", res.md5, file_digest(path, "md5")))
    for algo, want, got in expected:
        if want and want.lower() != got:
            path.unlink()
            raise DownloadError(
                f"Checksum mismatch for {path.name}: {algo} is {got}, expected {want}. The file was corrupted in "
                f"transit (or replaced by a proxy page) and has been removed; run the command again, or download "
                f"it by hand from {res.urls[0]} and put it at {path}."
            )
    if not (res.md5 or res.sha256):
        log.info("No checksum is published for %s; received sha256 %s", path.name, sha256)
    return sha256


def _progress(quiet: bool):
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), disable=quiet, transient=False,
    )


def _offline_message(res: Resource, root: Path, spec: DatasetSpec | None, reasons: list[str]) -> str:
    place = root / (res.filename if res.archive else (res.save_as or res.filename))
    text = (
        f"Cannot download {res.filename}: {'; '.join(reasons)}. This machine seems to be offline or the "
        f"server is unreachable. Download it by hand from {res.urls[0]}"
        + (f" (mirrors: {', '.join(res.urls[1:])})" if len(res.urls) > 1 else "")
        + f" and put it at {place}; then run this command again to verify"
        + (" and extract it" if res.archive else " it")
    )
    if spec is not None and res.archive:
        text += f" (or unpack it yourself so that {root / spec.check} exists)"
    return text + "."


def fetch(url: str, dest: Path, quiet: bool = False, timeout: float = TIMEOUT) -> Path:
    """Stream ``url`` to ``dest`` through ``dest.part`` (resumed with HTTP Range if it exists).

    Raises:
        urllib.error.URLError / HTTPError: left to the caller (mirrors, offline message).
    """
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the range starts at or past the end: start over
            part.unlink()
            return fetch(url, dest, quiet, timeout)
        raise
    with response:
        status = getattr(response, "status", None) or response.getcode()
        if offset and status != 206:
            log.info("Server ignored the Range request for %s; starting over.", url)
            offset = 0
        length = response.headers.get("Content-Length")
        total = int(length) + offset if length and str(length).isdigit() else None
        with _progress(quiet) as bar, open(part, "ab" if offset else "wb") as f:
            task = bar.add_task(dest.name, total=total, completed=offset)
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                bar.update(task, advance=len(chunk))
    if total is not None and part.stat().st_size < total:
        raise DownloadError(
            f"Download of {url} stopped at {part.stat().st_size} of {total} bytes; run the command again to resume."
        )
    os.replace(part, dest)
    return dest


def _read_marker(root: Path) -> dict:
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return {}


def _write_marker(root: Path, data: dict) -> None:
    tmp = root / (MARKER + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, root / MARKER)


def get_resource(res: Resource, root: Path, spec: DatasetSpec | None = None, force: bool = False,
                 keep_archive: bool = False, quiet: bool = False) -> str | None:
    """Download (or reuse), verify and install one resource; return its sha256 (None if skipped)."""
    dest = root / res.filename
    final = dest if res.archive else root / (res.save_as or res.filename)
    if not res.archive and final.is_file() and not force:
        return file_digest(final, "sha256")
    if not dest.is_file() or force:
        if force and dest.is_file():
            dest.unlink()
        reasons: list[str] = []
        offline, interrupted = True, False
        for url in res.urls:
            try:
                fetch(url, dest, quiet=quiet)
                break
            except urllib.error.HTTPError as exc:
                offline = False
                reasons.append(f"{url}: HTTP {exc.code} {exc.reason}")
            except urllib.error.URLError as exc:
                reasons.append(f"{url}: {exc.reason}")
            except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
                offline, interrupted = False, True
                reasons.append(f"{url}: interrupted ({exc.__class__.__name__}: {exc})")
        else:
            if offline:
                raise DownloadError(_offline_message(res, root, spec, reasons))
            retry = "Run the command again to resume, or d" if interrupted else "D"
            raise DownloadError(
                f"Cannot download {res.filename}: {'; '.join(reasons)}. {retry}ownload it by hand from "
                f"{res.urls[0]} and put it at {dest if res.archive else final}."
            )
    sha256 = verify(dest, res)
    if res.header is not None:
        with open(dest, "rb") as f:
            first = f.read(len(res.header) + 3).decode("utf-8", "replace").lstrip("\ufeff")
        if not first.startswith(res.header):
            dest.unlink()
            raise DownloadError(
                f"{res.filename} from {res.urls[0]} is not the expected CSV (it starts with {first!r}); "
                f"download it by hand and put it at {final}."
            )
    if res.archive:
        n = extract(dest, root, res.strip)
        log.info("Extracted %d files of %s into %s", n, dest.name, root)
        if not keep_archive:
            dest.unlink()
    elif dest != final:
        os.replace(dest, final)
    return sha256


def download(name: str, root: str | Path | None = None, force: bool = False, keep_archive: bool = False,
             quiet: bool = False) -> Path:
    """Download dataset ``name`` into ``root`` (default ``data/<folder>``); return the root.

    Raises:
        ConfigError: unknown name.
        DownloadError: offline, HTTP error, checksum mismatch, unsafe or unexpected archive.
    """
    spec = get_spec(name)
    root = Path(root).expanduser() if root else Path("data") / spec.folder
    root.mkdir(parents=True, exist_ok=True)
    marker = _read_marker(root)
    if marker.get("complete") and (root / spec.check).exists() and not force:
        _say(quiet, f"{spec.name} is already in {root} (use --force to download again).")
        return root
    done = marker.get("files", {})
    for res in spec.resources:
        if res.filename in done and not force and (not res.archive or (root / spec.check).exists()):
            continue
        try:
            sha = get_resource(res, root, spec, force=force, keep_archive=keep_archive, quiet=quiet)
        except DownloadError as exc:
            if not res.optional:
                raise
            log.warning("warning: optional file %s skipped: %s", res.filename, exc)
            continue
        done[res.filename] = sha
        _write_marker(root, {"dataset": spec.name, "files": done, "complete": False})
    if spec.post is not None:
        spec.post(root)
    if not (root / spec.check).exists():
        raise DownloadError(
            f"{spec.name}: after extraction {root / spec.check} does not exist; the archive layout is not the "
            f"expected one. Check the content of {root} and move the files so that {spec.check} is directly inside it."
        )
    _write_marker(root, {"dataset": spec.name, "files": done, "complete": True})
    _say(quiet, f"{spec.name} ready in {root}")
    return root


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text)
