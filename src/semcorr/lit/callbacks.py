"""The Lightning callbacks of a run, from its ``callbacks`` config group (``conf/callbacks/``), as
lightning-hydra-template's ``instantiate_callbacks``.

The group maps a name to a callback config (``_target_`` and arguments). An entry with
``_partial_: true`` needs values that only the run has (the evaluation module, the method, the run
directory...): :func:`instantiate_callbacks` completes it with the runner's ``runtime`` values,
each passed under the name of the constructor argument it fills, and only where the config leaves
that argument unset. What each runner offers is listed in its config file (``evaluate.yaml``:
``module``, ``journal``, ``method``, ``folder``, ``indices``, ``alphas``, ``every_n_pairs``, ``save``,
``command``; ``default.yaml``, the training runs': ``save``, ``command``). Users change an entry (``callbacks.progress.every_n=10``), drop one
(``~callbacks.pictures``) or add one (``+callbacks.lr={_target_: ...}``) from the command line.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback

from semcorr.errors import ConfigError


def instantiate_callbacks(node: DictConfig | Mapping[str, Any] | None, **runtime: Any) -> list[Callback]:
    """The callbacks of ``node`` in config order (entries set to null are skipped).

    Args:
        node: the ``callbacks`` config (name -> callback config), or None for none.
        **runtime: the run's values for ``_partial_`` entries, by constructor-argument name.

    Returns:
        The instantiated callbacks.

    Raises:
        ConfigError: an entry that cannot be instantiated, is not a Lightning ``Callback``, or needs
            an argument that neither its config nor the run gives (the message names
            ``callbacks.<name>`` and what the run offers).
    """
    callbacks = []
    for name, entry in (node or {}).items():
        if entry is None:
            continue
        key = f"callbacks.{name}"
        if "_target_" not in entry:
            raise ConfigError(f"{key} has no _target_: give the callback's class, e.g. {key}._target_=pytorch_lightning.callbacks.LearningRateMonitor")
        try:
            made = instantiate(entry)
        except InstantiationException as err:
            raise ConfigError(f"{key} ({entry['_target_']}) could not be built: {err}") from err
        if isinstance(made, functools.partial):
            made = _complete(key, made, runtime)
        if not isinstance(made, Callback):
            raise ConfigError(f"{key} ({entry['_target_']}) is a {type(made).__name__}, not a Lightning Callback")
        callbacks.append(made)
    return callbacks


def _complete(key: str, partial: functools.partial, runtime: Mapping[str, Any]) -> Any:
    """Call ``partial`` with the runtime values its constructor names and its config left unset."""
    parameters = inspect.signature(partial.func).parameters
    given = {n: v for n, v in runtime.items() if n in parameters and n not in partial.keywords}
    missing = [
        n for n, p in parameters.items()
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and n not in partial.keywords and n not in given
    ]
    if missing:
        offered = ", ".join(sorted(runtime)) or "nothing"
        raise ConfigError(
            f"{key} ({partial.func.__module__}.{partial.func.__qualname__}) needs {', '.join(missing)}, which this run "
            f"does not give (it gives {offered}): set {key}.{missing[0]}=..., or drop the entry with ~{key}"
        )
    return partial(**given)
