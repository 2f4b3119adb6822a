"""The one LightningDataModule of semcorr: wraps already-built pair datasets in loaders."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from semcorr.data.collate import collate_pairs


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

    def _loader(self, dataset: Dataset | None, shuffle: bool, stage: str) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"PairDataModule has no {stage} dataset.")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate_pairs,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.shuffle_train, "train")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False, "val")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False, "test")
