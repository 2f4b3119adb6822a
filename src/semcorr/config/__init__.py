"""Typed schemas of the configs and their check before a run (:func:`validate_config`).

Modules: :mod:`.schema` (the mechanism: TypedDict schemas with range constraints, a registry keyed
by what a node builds, one-line messages), :mod:`.methods`, :mod:`.datasets` and :mod:`.run` (the
schemas of ``conf/``). Importing this package registers them.
"""

from . import datasets, methods, run
from .run import EVALUATE, TRAIN
from .schema import check, register, registered, schema_for, validate_config

__all__ = ["EVALUATE", "TRAIN", "check", "datasets", "methods", "register", "registered", "run", "schema_for",
           "validate_config"]
