"""semcorr: semantic correspondence methods in one Lightning + Hydra evaluation loop.

Packages: :mod:`.data` (the benchmarks as pair datasets, the DataModule, downloads),
:mod:`.methods` (every method behind one :class:`~semcorr.methods.base.Matcher` interface, plain
torch), :mod:`.backbones` (frozen feature extractors and their weights), :mod:`.metrics` (the
metric families a dataset declares), :mod:`.lit` (Lightning: the evaluation runner and module,
training, callbacks), :mod:`.viz` (pictures and plots), :mod:`.config` (the config schemas checked
before a run). Modules: :mod:`.grid` (pixel grids, sampling at points, cells to pixels),
:mod:`.io` (atomic writes, safe file names, torch files), :mod:`.errors` (one-line user errors),
:mod:`.protocol` (the record of how a result was measured), :mod:`.results` (metrics.json,
predictions, the results table), :mod:`.report` (comparison reports), :mod:`.expected` (the
README's expected numbers), :mod:`.timing` (stage clocks), :mod:`.cli` (helpers of the entry
scripts ``evaluate.py`` and ``train.py``).
"""

__version__ = "0.1.0"
