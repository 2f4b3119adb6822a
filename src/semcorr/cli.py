"""Helpers for the entry scripts: user errors are printed plainly, without a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

from rich.console import Console

from semcorr.errors import SemcorrError

T = TypeVar("T")


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
    """Wrap a Hydra main so a :class:`SemcorrError` prints its message and exits with status 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is (or wraps) a user error
            user_error = find_user_error(exc)
            if user_error is None:
                raise
            Console(stderr=True).print(f"[bold red]error:[/] {type(user_error).__name__}: {user_error}", highlight=False)
            sys.exit(1)

    return wrapper
