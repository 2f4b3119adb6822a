"""The benchmarks as pair datasets, and everything that brings pairs to a method.

Every dataset derives from :class:`~semcorr.data.base.PairDataset` (:mod:`.base`: the sample keys,
resizing, the threshold and metric families it declares). Keypoint benchmarks: :mod:`.pfpascal`,
:mod:`.pfwillow`, :mod:`.spair`, :mod:`.cub` (also masks); dense ones: :mod:`.tss` (flow, masks),
:mod:`.caltech` (mask transfer); generated and offline: :mod:`.synthetic` and :mod:`.sample` (random
warps of :mod:`.warps`), :mod:`.pairs` (a folder of the user's own pairs). Shared pieces:
:mod:`.thresholds` (the PCK threshold T), :mod:`.subsets` (stratified subsets), :mod:`.transforms`
(resizing images, points, masks and flows together), :mod:`.images` and :mod:`.flo` (reading
files), :mod:`.collate` (batching), :mod:`.datamodule` (the LightningDataModule) and
:mod:`.download` (``python -m semcorr.data.download``).
"""
