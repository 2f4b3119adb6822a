"""SAM-Net training with Lightning: ``python train.py model=samnet``.

Modules: :mod:`.module` (the :class:`SAMNetModule` LightningModule, instantiated from
``model.module``), :mod:`.data` (each stage's pairs, built and checked before the first step; the
epoch sampler), :mod:`.stages` (the stage runner :func:`run_stages`: one Lightning fit per stage,
checkpoints, resume, ``final.json``), :mod:`.progress` (one progress bar per stage; the warning
when a GPU schedule runs on a CPU).
"""

from .data import EpochSampler, MemoryCache
from .module import SAMNetModule, warmup_cosine
from .progress import ScheduleCheck, StageProgressBar
from .stages import run_stages

__all__ = ["EpochSampler", "MemoryCache", "SAMNetModule", "ScheduleCheck", "StageProgressBar", "run_stages", "warmup_cosine"]
