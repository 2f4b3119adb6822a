"""Synthetic pairs: every image of a folder paired with random affine + TPS warps of itself.

The SAM-Net stage-1 training data (DESIGN.md: rotation +-pi/12, scale 0.75-1.25, translation
+-0.25, 3x3 TPS jitter +-0.4), and a benchmark with exact ground truth for any folder of photos.

Pairs
-----
``root`` is searched recursively for ``.jpg`` / ``.jpeg`` / ``.png`` files (any case; hidden
folders skipped), sorted by relative path. Each image gives ``pairs_per_image`` pairs
``<relative path>#<k>``. A pair's source is the image resized to ``size`` (default 240x240, aspect
not kept, so batches stack; with ``size=None`` the usual ``max_side`` rule applies); its target is
the source rendered through a random :class:`semcorr.data.warps.Warp` at the same size.

The warp of a pair is drawn from ``make_generator(seed, pair_id)``: it depends only on the seed and
the pair's name, not on its position, so filtering (``categories``, subsets) or the split
does not change it, and worker processes agree.

Splits: an image belongs to ``test`` / ``val`` / ``train`` by a hash of its relative path
(fractions ``test_fraction`` / ``val_fraction`` / the rest), stable when files are added;
``split="all"`` takes every image.

Sample keys
-----------
Those of :mod:`semcorr.data.base`, plus:

============== ================= =============================================================
flow           (2, Hs, Ws) f32   source -> target displacement (``MatchOutput.flow``
                                 convention): source pixel (x, y) lands on target pixel
                                 (x + flow[0, y, x], y + flow[1, y, x]); NaN where it leaves
                                 the target (outside [0, W-1] x [0, H-1])
src_mask       (Hs, Ws) bool     where ``flow`` is finite (the name the evaluation loop and
                                 the TSS dataset use for "where ``flow`` is known")
flow_threshold float             T of the flow-accuracy rule in ORIGINAL target pixels:
                                 ``flow_alpha * max(H0, W0)`` of the original image (as TSS;
                                 ``trg_scale`` converts resized errors back)
============== ================= =============================================================

(These three are left out with ``with_flow=False``, which saves the TPS inversion.)

* ``src_kps`` / ``trg_kps``: ``n_kps`` exact correspondences, target points uniform over the part
  of the target that samples the source, sources from the sampling map (exact by construction, see
  :mod:`semcorr.data.warps`). ``n_kps=0`` gives pairs without keypoints (SAM-Net stage 1; the PCK
  threshold is then NaN).
* ``pck_threshold``: max(H, W) of the target (``threshold = "img"``); ``pck_threshold_original``:
  max(H0, W0) of the original image.
* ``category``: the name of the image's folder, ``"synthetic"`` for images directly in ``root``.
* ``src_path``: the image file. ``trg_path``: ``<image file>#warp<k>``, a unique NAME (no such
  file exists; the target lives only in memory), so that methods caching per-image work by path
  never confuse a target with its source.
* ``src_scale`` = ``trg_scale``: resized / original image size (the target frame is the warped
  original frame).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, ClassVar

import torch

from semcorr.data.base import PairDataset, PairRecord
from semcorr.data.images import load_image
from semcorr.data.thresholds import pck_threshold
from semcorr.data.transforms import resize_image
from semcorr.data.warps import Warp, WarpRanges, make_generator, sample_warp
from semcorr.errors import ConfigError

#: File suffixes read as images (compared lower-case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def find_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, hidden folders skipped), sorted by relative path."""
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def hash_fraction(text: str) -> float:
    """A stable pseudo-random number in [0, 1) from a string (first 8 bytes of its SHA-1)."""
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big") / 2.0**64


class SyntheticPairsDataset(PairDataset):
    """Pairs (image, random warp of the image) with exact keypoints and dense flow.

    Args:
        root: folder of images (searched recursively).
        split: ``"train"``, ``"val"``, ``"test"`` (hash split of the images) or ``"all"``.
        name / max_side / upscale / convert_images / categories / pairs_per_category / max_pairs /
            subset_seed: see
            :class:`semcorr.data.base.PairDataset`.
        size: (H, W) of both images; default (240, 240). None: ``max_side`` resize (sizes vary).
        seed: seed of the warps (with the pair name).
        pairs_per_image: warps per image.
        n_kps: keypoints per pair (0: none).
        kp_margin: keypoints at least this many pixels inside both images.
        rotation: max |angle| (radians). scale: (min, max). translation: max |shift| (fraction of
            the image size). tps_jitter: max control-point jitter (normalised units, image = 2).
        min_jacobian / min_overlap: warp rejection rules, see :class:`semcorr.data.warps.WarpRanges`.
        val_fraction / test_fraction: shares of the images in the val / test splits.
        with_flow: add ``flow``, ``src_mask`` and ``flow_threshold``.
        flow_alpha: ``flow_threshold = flow_alpha * max(H0, W0)`` (original pixels).
    """

    thresholds: ClassVar[tuple[str, ...]] = ("img",)
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test", "all")

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        name: str | None = "synthetic",
        max_side: int | None = 300,
        size: tuple[int, int] | None = (240, 240),
        upscale: bool = False,
        convert_images: bool = True,
        categories: list[str] | None = None,
        pairs_per_category: int | None = None,
        max_pairs: int | None = None,
        subset_seed: int = 0,
        seed: int = 0,
        pairs_per_image: int = 1,
        n_kps: int = 20,
        kp_margin: float = 0.0,
        rotation: float = math.pi / 12,
        scale: tuple[float, float] = (0.75, 1.25),
        translation: float = 0.25,
        tps_jitter: float = 0.4,
        min_jacobian: float = 0.05,
        min_overlap: float = 0.25,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        with_flow: bool = True,
        flow_alpha: float = 0.05,
    ) -> None:
        if int(pairs_per_image) < 1:
            raise ConfigError(f"dataset.pairs_per_image must be >= 1, got {pairs_per_image}")
        if int(n_kps) < 0:
            raise ConfigError(f"dataset.n_kps must be >= 0, got {n_kps}")
        if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction <= 1):
            raise ConfigError(
                f"dataset.val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be >= 0 "
                "and sum to <= 1"
            )
        self.seed = int(seed)
        self.pairs_per_image = int(pairs_per_image)
        self.n_kps = int(n_kps)
        self.kp_margin = float(kp_margin)
        self.ranges = WarpRanges(
            rotation=float(rotation),
            scale=(float(scale[0]), float(scale[1])),
            translation=float(translation),
            tps_jitter=float(tps_jitter),
            min_jacobian=float(min_jacobian),
            min_overlap=float(min_overlap),
        )
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.with_flow = bool(with_flow)
        self.flow_alpha = float(flow_alpha)
        # Keypoints are generated per sample, not read from records (base check_keypoints skips).
        self.requires_keypoints = self.n_kps > 0
        super().__init__(
            root,
            split=split,
            name=name,
            max_side=max_side,
            size=tuple(size) if size is not None else None,
            upscale=upscale,
            convert_images=convert_images,
            categories=categories,
            pairs_per_category=pairs_per_category,
            max_pairs=max_pairs,
            subset_seed=subset_seed,
        )

    # -- records ------------------------------------------------------------------------------
    def split_of(self, rel: str) -> str:
        """The split ("test", "val" or "train") of an image, from its relative path."""
        f = hash_fraction(rel)
        if f < self.test_fraction:
            return "test"
        if f < self.test_fraction + self.val_fraction:
            return "val"
        return "train"

    @property
    def evaluators(self) -> tuple[str, ...]:
        """PCK when the pairs have keypoints, flow accuracy when they have the flow."""
        return ("pck",) * (self.n_kps > 0) + ("flow",) * self.with_flow

    def image_hw(self, path: Path) -> tuple[int, int]:
        """(H, W) of an image; a target's ``<file>#warp<k>`` name has its source's size."""
        return super().image_hw(Path(str(path).split("#warp")[0]))

    def protocol_options(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "pairs_per_image": self.pairs_per_image, "n_kps": self.n_kps, "kp_margin": self.kp_margin,
            "ranges": vars(self.ranges), "flow_alpha": self.flow_alpha if self.with_flow else None,
        }

    def load_records(self) -> list[PairRecord]:
        self.pair_source = f"every image under the root ({self.split} split), {self.pairs_per_image} random warp(s) each"
        records = []
        for path in find_images(self.root):
            rel = path.relative_to(self.root).as_posix()
            if self.split != "all" and self.split_of(rel) != self.split:
                continue
            category = path.parent.name if path.parent != self.root else "synthetic"
            for k in range(self.pairs_per_image):
                records.append(
                    PairRecord(
                        pair_id=f"{rel}#{k}",
                        src_path=path,
                        trg_path=Path(f"{path}#warp{k}"),
                        category=category,
                    )
                )
        return records

    def check_keypoints(self, record: PairRecord) -> None:
        """Keypoints are made in :meth:`__getitem__`: nothing to check in the records."""

    # -- samples ------------------------------------------------------------------------------
    def warp_of(self, index: int, size: tuple[int, int]) -> tuple[Warp, torch.Generator]:
        """The warp of pair ``index`` for an (H, W) frame, and its generator (for the keypoints)."""
        generator = make_generator(self.seed, self.records[index].pair_id)
        return sample_warp(size, self.ranges, generator), generator

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        full = load_image(record.src_path, self.convert_images, self.download_command)
        hw = (int(full.shape[-2]), int(full.shape[-1]))
        size = self.resize.target_size(*hw)
        sx, sy = self.resize.scale_factors(*hw)
        src = resize_image(full, size)
        warp, generator = self.warp_of(index, size)
        trg = warp.render(src).clamp_(0.0, 1.0)
        if self.n_kps > 0:
            src_kps, trg_kps = warp.sample_keypoints(self.n_kps, generator, margin=self.kp_margin)
            src_kps, trg_kps = src_kps.float(), trg_kps.float()
        else:
            src_kps = trg_kps = torch.zeros(0, 2)
        scale = torch.tensor([sx, sy], dtype=torch.float32)
        sample: dict[str, Any] = {
            "src_img": src,
            "trg_img": trg,
            "src_kps": src_kps,
            "trg_kps": trg_kps,
            "n_kps": len(src_kps),
            "pck_threshold": pck_threshold(self.threshold, size, None) if len(src_kps) else math.nan,
            "pck_threshold_original": pck_threshold(self.threshold, hw, None) if len(src_kps) else math.nan,
            "category": record.category,
            "category_id": self.categories.index(record.category),
            "pair_id": record.pair_id,
            "index": index,
            "src_scale": scale,
            "trg_scale": scale.clone(),
            "src_path": str(record.src_path),
            "trg_path": str(record.trg_path),
        }
        if self.with_flow:
            flow = warp.flow()
            sample["flow"] = flow
            sample["src_mask"] = torch.isfinite(flow).all(dim=0)
            sample["flow_threshold"] = self.flow_alpha * max(hw)
        return sample
