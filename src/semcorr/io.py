"""Files in and out: atomic writes (a result file is either complete or absent, never half-written)
and :func:`read_torch`, which turns every way a ``torch.load`` can fail on a bad file into one
line naming the file and the fix."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from semcorr.errors import SemcorrError


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``.

    The rename is atomic on POSIX file systems, so readers see the old file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n"))


def write_text(path: str | Path, text: str) -> Path:
    """Write text, atomically."""
    return atomic_write(path, lambda p: p.write_text(text))


def torch_save(path: str | Path, obj: Any) -> Path:
    """``torch.save`` atomically."""
    return atomic_write(path, lambda p: torch.save(obj, p))


def read_torch(path: str | Path, error: type[SemcorrError], fix: str, weights_only: bool = True) -> Any:
    """``torch.load`` a file on the CPU, or raise ``error`` naming the file and ``fix``.

    A file that is not a torch file (random bytes, text, a truncated download) makes ``torch.load``
    fail in many ways (``UnpicklingError``, ``KeyError``, ``EOFError``, ``RuntimeError``...), and
    torch's own message for some of them suggests ``weights_only=False``, which would run any code
    the file holds: the message raised here never repeats torch's, only the kind of failure.

    Args:
        path: the file (it must exist: a missing file is the caller's own message).
        error: the :class:`~semcorr.errors.SemcorrError` to raise.
        fix: what the user should do, appended to the message.
        weights_only: torch's safe unpickler (tensors and plain values only); False only for files
            this program wrote itself (the evaluation journal).
    """
    file = Path(path)
    try:
        return torch.load(file, map_location="cpu", weights_only=weights_only)
    except Exception as err:  # noqa: BLE001 - a bad file fails torch.load in a dozen ways (KeyError(101) for text)
        if weights_only and isinstance(err, pickle.UnpicklingError) and zipfile.is_zipfile(file):
            what = ("holds Python objects besides tensors and plain values (e.g. a whole pickled model), which "
                    "are not unpickled here because unpickling can run arbitrary code")
        else:
            what = (f"is not a readable torch file ({type(err).__name__} while reading it: corrupt, truncated, "
                    "or not written by torch.save)")
        raise error(f"{str(file)!r} {what}. {fix}") from err
