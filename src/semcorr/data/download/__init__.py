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

Modules: :mod:`.catalogue` (the datasets' URLs, checksums and layouts, with the list of sources),
:mod:`.fetcher` (download, verify, extract, with progress), :mod:`.archives` (safe extraction),
:mod:`.cli` (the command line). To make a new dataset downloadable, add its
:class:`~.catalogue.DatasetSpec` to :data:`~.catalogue.DATASETS`.
"""

from .archives import DownloadError, extract
from .catalogue import DATASETS, DatasetSpec, Resource, get_spec
from .cli import main
from .fetcher import MARKER, download

__all__ = [
    "DATASETS",
    "MARKER",
    "DatasetSpec",
    "DownloadError",
    "Resource",
    "download",
    "extract",
    "get_spec",
    "main",
]
