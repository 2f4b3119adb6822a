"""The one LightningDataModule of semcorr: wraps already-built pair datasets in loaders.

With several processes (``trainer=ddp``) the test and validation loaders give each process its own
shard through :class:`ShardSampler` -- unlike Lightning's ``DistributedSampler``, it never pads a
shard with repeated pairs, so every pair is evaluated and counted exactly once. Build the Trainer
with ``use_distributed_sampler=False`` so Lightning keeps these samplers. A resumed evaluation sets
:attr:`PairDataModule.exclude` to the pairs it has already done.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset, Sampler

from semcorr.data.collate import collate_pairs

log = logging.getLogger(__name__)


class ShardSampler(Sampler[int]):
    """Dataset indices ``rank, rank + W, rank + 2W, ...``: each index on exactly one of the ``W``
    processes, none repeated (shards differ in length by at most one; no padding), less the
    ``exclude``d ones (pairs a resumed run has already evaluated).

    Args:
        length: number of items in the dataset.
        rank / world_size: this process and the number of processes.
        exclude: indices to leave out.
    """

    def __init__(self, length: int, rank: int, world_size: int, exclude: Iterable[int] = ()) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.length, self.rank, self.world_size = int(length), int(rank), int(world_size)
        skip = {int(i) for i in exclude}
        self.indices = [i for i in range(self.rank, self.length, self.world_size) if i not in skip]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class PairDataModule(pl.LightningDataModule):
    """Loaders over pair datasets (any :class:`semcorr.data.base.PairDataset`).

    Args:
        test / val / train: the datasets of each stage (None where a stage is not run).
        batch_size: pairs per batch (1 unless every image of the dataset has the same size).
        num_workers: loader worker processes.
        shuffle_train: shuffle the training pairs each epoch.
    """

    def __init__(
        self,
        test: Dataset | None = None,
        val: Dataset | None = None,
        train: Dataset | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        shuffle_train: bool = True,
    ) -> None:
        super().__init__()
        self.test_set, self.val_set, self.train_set = test, val, train
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.shuffle_train = shuffle_train
        #: test/val pair indices to skip (set by a resumed evaluation)
        self.exclude: set[int] = set()

    def _loader(self, dataset: Dataset | None, shuffle: bool, stage: str, sharded: bool = False) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"PairDataModule has no {stage} dataset.")
        sampler = None
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        if sharded and (world > 1 or self.exclude):
            if world > len(dataset):
                log.warning("%d processes for %d pairs: some processes get no pair", world, len(dataset))
            sampler = ShardSampler(len(dataset), rank, world, self.exclude)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_pairs,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.shuffle_train, "train")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False, "val", sharded=True)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False, "test", sharded=True)
