"""Lightning at the edge: everything that runs a method or a model through a Trainer.

Evaluation: :mod:`.evaluation_runner` (the runner behind ``evaluate.py``) and :mod:`.evaluation_module` (the
LightningModule it runs), with their callbacks, built from the ``callbacks`` config group by
:mod:`.callbacks`: :mod:`.journal` (resumable progress), :mod:`.pictures` (the pictures),
:mod:`.interrupt` (Ctrl-C without loss), :mod:`.loggers` (what goes to W&B / CSV) and
:mod:`.progress` (progress lines). Training: :mod:`.samnet` (SAM-Net) and :mod:`.hpf_search` (HPF's
layer search), both behind ``train.py``.
"""
