"""Helpers for the entry scripts: a quiet console, user errors printed plainly (no traceback), and
Ctrl-C outside Lightning's loops ended with one line.

Inside ``Trainer.test`` / ``fit`` a Ctrl-C is handled by the runs themselves (they journal what is
done and print the resume command, :mod:`semcorr.lit.interrupt`).
"""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from collections.abc import Callable
from typing import TypeVar

from rich.console import Console
from rich.markup import escape

from semcorr.errors import SemcorrError

T = TypeVar("T")

#: Loggers whose INFO lines (devices found, tips, DDP set-up) are kept off the console.
CHATTY_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")


def quiet_libraries() -> None:
    """Keep library chatter off the console: Lightning's info lines, a deprecation warning raised
    inside Lightning that a user cannot act on, and Lightning's warning about an empty loader (a
    resumed run with every pair done). Other warnings and errors still show."""
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # a resumed evaluation whose pairs were all journalled has nothing left to load: not a problem
    warnings.filterwarnings("ignore", message=r"Total length of `DataLoader` across ranks is zero")


def find_user_error(exc: BaseException) -> SemcorrError | None:
    """The :class:`SemcorrError` that ``exc`` is or wraps (Hydra's instantiate wraps errors)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, SemcorrError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def exit_on_user_error(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap a Hydra main: quiet the libraries; a :class:`SemcorrError` prints its message and exits
    with status 1, a Ctrl-C outside the trainer's loops prints one line and exits with 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        quiet_libraries()
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            Console(stderr=True).print("[bold yellow]Interrupted.[/]", highlight=False)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is (or wraps) a user error
            user_error = find_user_error(exc)
            if user_error is None:
                raise
            Console(stderr=True).print(
                f"[bold red]error:[/] {type(user_error).__name__}: {escape(str(user_error))}", highlight=False,
                soft_wrap=True,
            )
            sys.exit(1)

    return wrapper
