"""Download the benchmarks into the layouts the dataset classes read.

Usage::

    python -m semcorr.data.download NAME [--root DIR] [--force] [--keep-archive] [--quiet]
    python -m semcorr.data.download --list

``DIR`` is the dataset's root, the same folder as ``dataset.root`` in the configs (default
``data/<folder>``, e.g. ``data/PF-PASCAL``). Every file is streamed in chunks with a progress bar
into ``<file>.part`` and renamed when complete; an interrupted download resumes from the
``.part`` file (HTTP Range). Checksums are verified where they are published; where none is,
the sha256 of what was received is logged (and kept in ``DIR/.semcorr_download.json``). Archives are extracted
safely (no absolute paths, no ``..``, no links), a single top-level folder of the release
(``strip``) is lifted so that ``DIR`` holds the layout directly. A file placed by hand at
``DIR/<file name>`` is used instead of downloading it (offline machines).

Sources (official pages; checksums as published, "none published" otherwise):

========= ======================================================================================
pfpascal  https://www.di.ens.fr/willow/research/proposalflow/dataset/PF-dataset-PASCAL.zip
          (official PF-PASCAL release, no checksum published) -> ``DIR/PF-dataset-PASCAL/``.
          Pair lists: ``test_pairs_pf_pascal.csv`` and ``val_pairs_pf_pascal.csv`` of the
          CNNGeometric / WeakAlign release (www.di.ens.fr/willow/research/cnngeometric/
          other_resources/), saved as ``DIR/test_pairs.csv`` and ``DIR/val_pairs.csv``; the
          training list (2940 rows with ``flip``), which has no official home: the Google Drive
          file 111tpXshLiJ4qudBHoGK3HbMSNr9vVRq9 that the DenseMatching / GeoAware-SC scripts
          fetch, saved as ``DIR/train_pairs.csv`` (optional: a failure only warns; HPF's
          Google Drive package of PF-PASCAL names its lists ``{trn,val,test}_pairs.csv``, which
          the dataset also reads).
pfwillow  https://www.di.ens.fr/willow/research/proposalflow/dataset/PF-dataset.zip (no checksum
          published; its ``PF-dataset/`` becomes ``DIR``) and the CNNGeometric list
          ``test_pairs_pf.csv`` -> ``DIR/test_pairs_pf.csv`` (optional: the dataset can pair the
          images of each sub-class itself).
spair     http://cvlab.postech.ac.kr/research/SPair-71k/data/SPair-71k.tar.gz (no checksum
          published; its ``SPair-71k/`` becomes ``DIR``).
tss       TSS_CVPR2016.zip from the project page https://taniai.space/projects/cvpr16_dccs/
          (the file URL under it is not verified here), with the University of Tokyo URL used
          by CNNGeometric as a mirror; no checksum published; ``TSS_CVPR2016/`` becomes ``DIR``
          (``DIR/{FG3DCar,JODS,PASCAL}/<pair>/``); plus the CNNGeometric ``test_pairs_tss.csv``
          (optional).
caltech   https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip, md5
          3138e1922a9193bfa496528edbbc45d0 (as torchvision verifies it); the inner
          ``101_ObjectCategories.tar.gz`` and ``Annotations.tar`` are unpacked into ``DIR`` and
          four annotation folders renamed to their image folders' names (``Airplanes_Side_2`` ->
          ``airplanes``, ``Faces_2`` -> ``Faces``, ``Faces_3`` -> ``Faces_easy``,
          ``Motorbikes_16`` -> ``Motorbikes``, as CNNGeometric does); plus the pair list
          ``test_pairs_caltech_with_category.csv`` of CNNGeometric (1515 pairs, with polygons).
cub       https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz, md5
          97eceeb196236b17998738112f37df78 (not on the record page; the value public loaders
          verify); ``CUB_200_2011/`` becomes ``DIR``. The foreground masks are a separate record:
          https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz (mirror: the old
          www.vision.caltech.edu/visipedia-data/CUB-200-2011/ address; no checksum known here),
          unpacked to ``DIR/segmentations/`` (optional: a failure only warns).
voc       PASCAL VOC 2012 trainval (SAM-Net stage 1):
          http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar (mirror
          thor.robots.ox.ac.uk, torchvision's), md5 6cd6e144f989b92b3379bac3b3de84fd;
          ``VOCdevkit/VOC2012/`` becomes ``DIR`` (``DIR/JPEGImages``...).
========= ======================================================================================
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from semcorr.errors import ConfigError, SemcorrError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT = 60.0
USER_AGENT = "semcorr-download/0.1 (+python urllib)"
MARKER = ".semcorr_download.json"
_SKIP_NAMES = {"__MACOSX", ".DS_Store", "Thumbs.db"}
_ENS = "https://www.di.ens.fr/willow/research"
_CNNGEO = f"{_ENS}/cnngeometric/other_resources"


class DownloadError(SemcorrError):
    """A download failed: offline, HTTP error, checksum mismatch, unsafe or unexpected archive."""


@dataclass(frozen=True)
class Resource:
    """One file of a dataset release.

    Attributes:
        urls: where to get it, tried in order (mirrors).
        filename: name of the downloaded file (inside the dataset root).
        md5 / sha256: published checksums (None where none is published).
        archive: extract it (zip / tar / tar.gz), then delete it unless asked to keep it.
        save_as: for plain files, the path under the root to save to (default ``filename``).
        strip: top-level folder(s) of the archive whose content goes straight into the root.
        optional: a failure warns instead of stopping the command.
        header: for text files, what the first line must start with (catches HTML error pages).
    """

    urls: tuple[str, ...]
    filename: str
    md5: str | None = None
    sha256: str | None = None
    archive: bool = True
    save_as: str | None = None
    strip: str | None = None
    optional: bool = False
    header: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A downloadable dataset: its files, default folder and the path that proves it is there."""

    name: str
    folder: str
    description: str
    resources: tuple[Resource, ...]
    check: str
    post: Callable[[Path], None] | None = field(default=None, compare=False)


def _caltech_post(root: Path) -> None:
    """Unpack Caltech-101's inner archives and align four annotation folder names."""
    for inner in ("101_ObjectCategories.tar.gz", "Annotations.tar"):
        path = root / inner
        if path.is_file():
            extract(path, root)
            path.unlink()
    renames = {"Airplanes_Side_2": "airplanes", "Faces_2": "Faces", "Faces_3": "Faces_easy", "Motorbikes_16": "Motorbikes"}
    for old, new in renames.items():
        src, dst = root / "Annotations" / old, root / "Annotations" / new
        if src.is_dir() and not dst.exists():
            src.rename(dst)


DATASETS: dict[str, DatasetSpec] = {
    "pfpascal": DatasetSpec(
        name="pfpascal",
        folder="PF-PASCAL",
        description="PF-PASCAL: 20 VOC classes (test 299 / val 308 / train 2940 pairs incl. mirrored ones)",
        resources=(
            Resource((f"{_ENS}/proposalflow/dataset/PF-dataset-PASCAL.zip",), "PF-dataset-PASCAL.zip"),
            Resource((f"{_CNNGEO}/test_pairs_pf_pascal.csv",), "test_pairs_pf_pascal.csv", archive=False,
                     save_as="test_pairs.csv", header="source_image"),
            Resource((f"{_CNNGEO}/val_pairs_pf_pascal.csv",), "val_pairs_pf_pascal.csv", archive=False,
                     save_as="val_pairs.csv", header="source_image"),
            Resource(("https://drive.google.com/uc?export=download&id=111tpXshLiJ4qudBHoGK3HbMSNr9vVRq9",),
                     "trn_pairs_pf_pascal.csv", archive=False, save_as="train_pairs.csv", optional=True,
                     header="source_image"),
        ),
        check="PF-dataset-PASCAL/JPEGImages",
    ),
    "pfwillow": DatasetSpec(
        name="pfwillow",
        folder="PF-WILLOW",
        description="PF-WILLOW: 900 test pairs of 10 sub-classes",
        resources=(
            Resource((f"{_ENS}/proposalflow/dataset/PF-dataset.zip",), "PF-dataset.zip", strip="PF-dataset"),
            Resource((f"{_CNNGEO}/test_pairs_pf.csv",), "test_pairs_pf.csv", archive=False, optional=True),
        ),
        check="car(G)",
    ),
    "spair": DatasetSpec(
        name="spair",
        folder="SPair-71k",
        description="SPair-71k: 70,958 pairs of 18 categories (trn 53,340 / val 5,384 / test 12,234)",
        resources=(
            Resource(("http://cvlab.postech.ac.kr/research/SPair-71k/data/SPair-71k.tar.gz",), "SPair-71k.tar.gz",
                     strip="SPair-71k"),
        ),
        check="Layout/large/test.txt",
    ),
    "tss": DatasetSpec(
        name="tss",
        folder="TSS",
        description="TSS (Taniai et al. CVPR 2016): 400 pairs with dense flow and masks",
        resources=(
            Resource(("https://taniai.space/projects/cvpr16_dccs/data/TSS_CVPR2016.zip",
                      "http://www.hci.iis.u-tokyo.ac.jp/datasets/data/JointCorrCoseg/TSS_CVPR2016.zip"),
                     "TSS_CVPR2016.zip", strip="TSS_CVPR2016"),
            Resource((f"{_CNNGEO}/test_pairs_tss.csv",), "test_pairs_tss.csv", archive=False, optional=True),
        ),
        check="FG3DCar",
    ),
    "caltech": DatasetSpec(
        name="caltech",
        folder="Caltech-101",
        description="Caltech-101: images and object outlines (mask transfer, 1515 CNNGeometric test pairs)",
        resources=(
            Resource(("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",), "caltech-101.zip",
                     md5="3138e1922a9193bfa496528edbbc45d0", strip="caltech-101"),
            Resource((f"{_CNNGEO}/test_pairs_caltech_with_category.csv",), "test_pairs_caltech_with_category.csv",
                     archive=False),
        ),
        check="101_ObjectCategories",
        post=_caltech_post,
    ),
    "cub": DatasetSpec(
        name="cub",
        folder="CUB_200_2011",
        description="CUB-200-2011: 11,788 bird images with 15 part keypoints",
        resources=(
            Resource(("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",), "CUB_200_2011.tgz",
                     md5="97eceeb196236b17998738112f37df78", strip="CUB_200_2011"),
            Resource(("https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz",
                      "http://www.vision.caltech.edu/visipedia-data/CUB-200-2011/segmentations.tgz"),
                     "segmentations.tgz", optional=True),
        ),
        check="images",
    ),
    "voc": DatasetSpec(
        name="voc",
        folder="VOC2012",
        description="PASCAL VOC 2012 trainval (17,125 images; SAM-Net stage-1 synthetic pairs)",
        resources=(
            Resource(("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
                      "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"),
                     "VOCtrainval_11-May-2012.tar", md5="6cd6e144f989b92b3379bac3b3de84fd", strip="VOCdevkit/VOC2012"),
        ),
        check="JPEGImages",
    ),
}


# -- helpers ----------------------------------------------------------------------------------
def get_spec(name: str) -> DatasetSpec:
    """The spec of a dataset name; :class:`ConfigError` listing the valid names otherwise."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise ConfigError(f"Unknown dataset {name!r}. Downloadable datasets: {', '.join(DATASETS)}.")
    return DATASETS[key]


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


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (its help lists the datasets)."""
    lines = [f"  {n:<9} {s.description} (default root data/{s.folder})" for n, s in DATASETS.items()]
    return argparse.ArgumentParser(
        prog="python -m semcorr.data.download",
        description="Download a semantic-correspondence benchmark into the layout semcorr reads.",
        epilog="datasets:\n" + "\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 download error, 2 bad arguments)."""
    parser = build_parser()
    parser.add_argument("name", nargs="?", help=f"dataset to download: {', '.join(DATASETS)}")
    parser.add_argument("--root", type=Path, default=None, help="dataset folder (= dataset.root); default data/<folder>")
    parser.add_argument("--force", action="store_true", help="download and extract again even if present")
    parser.add_argument("--keep-archive", action="store_true", help="keep the downloaded archives")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--list", action="store_true", help="list the datasets and exit")
    args = parser.parse_args(argv)
    if args.list:
        print(parser.epilog)
        return 0
    if not args.name:
        parser.print_usage(sys.stderr)
        print(f"error: give a dataset name: {', '.join(DATASETS)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        get_spec(args.name)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        download(args.name, args.root, force=args.force, keep_archive=args.keep_archive, quiet=args.quiet)
    except SemcorrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
