"""The offline default dataset: a few warped photos that scikit-image ships, with exact keypoints.

``python evaluate.py`` runs on it with nothing downloaded. Each photo (scikit-image's bundled
``astronaut``, ``chelsea``, ``coffee``, ``rocket``; read from the installed wheel, never fetched),
shrunk to a longer side of ``photo_side`` (300) px, gives ``pairs_per_photo`` pairs (default 2, so
8 pairs): the photo and a random affine + TPS warp of it (:mod:`semcorr.data.warps`, DESIGN.md's
SAM-Net stage-1 ranges) at the photo's size.

Keypoints: the ``n_kps`` strongest Harris corners of the source (``skimage.feature.corner_peaks``
on ``corner_harris``, at integer pixels, spread by ``min_distance``) whose target position lies
at least ``kp_margin`` px inside the target; target positions from the warp's forward map,
checked to < 1e-3 px (in practice ~1e-10 px) by mapping them back with the sampling map.

Cache: the pairs are rendered once into ``root/<split>-<key>/`` (``<photo>.png`` sources,
``<photo>-<k>-warp.png`` targets, ``pairs.json`` with keypoints, in original pixels, and the warp
parameters), where ``key`` hashes every generation parameter, so changing one builds a new
folder. The folder is built under a temporary name and renamed into place (atomic: concurrent
processes either see a complete folder or build their own and discard it). The pairs then have real
files and go through :class:`semcorr.data.base.PairDataset` unchanged (resize, keypoint scaling).
Targets are stored as 8-bit PNG (the rendering rounded to 1/255); the keypoints do not depend on it.

Splits ``test`` / ``val`` / ``train`` use the same photos with different warps (the warp of pair k
of a photo is drawn from ``make_generator(seed, split, photo, k)``). PCK threshold: max(H, W) of the
target (``"image"``). Categories: the photo names.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from semcorr.data.base import PairDataset, PairRecord
from semcorr.data.warps import WarpRanges, inside, make_generator, sample_warp
from semcorr.errors import ConfigError, DatasetNotFoundError

#: Photos bundled in the scikit-image wheel (loaded without pooch or network).
SHIPPED_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")

#: Bump when the way pairs are generated changes (old cache folders are then ignored).
CACHE_VERSION = 1


def load_photo(name: str, side: int | None = None) -> np.ndarray:
    """A bundled scikit-image photo as an (H, W, 3) uint8 array.

    With ``side``, photos whose longer side exceeds it are shrunk (Lanczos, aspect kept) to a
    longer side of ``side`` px (the other ``round(H * side / max(H, W))``).
    """
    if name not in SHIPPED_PHOTOS:
        raise ConfigError(f"dataset.photos: unknown photo {name!r}; valid: {', '.join(SHIPPED_PHOTOS)}")
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ConfigError(f"scikit-image photo {name!r} is {img.shape} {img.dtype}, not (H, W, 3) uint8")
    h, w = img.shape[:2]
    if side is not None and max(h, w) > side:
        r = side / max(h, w)
        size = (max(1, round(w * r)), max(1, round(h * r)))
        img = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))
    return img


def corner_candidates(img: np.ndarray, min_distance: int) -> np.ndarray:
    """Harris corners of an (H, W, 3) uint8 image, strongest first: (K, 2) float64 (x, y)."""
    from skimage.color import rgb2gray
    from skimage.feature import corner_harris, corner_peaks

    response = corner_harris(rgb2gray(img))
    peaks = corner_peaks(response, min_distance=min_distance, threshold_rel=0.001, exclude_border=True)
    order = np.argsort(-response[peaks[:, 0], peaks[:, 1]], kind="stable")
    return peaks[order][:, ::-1].astype(np.float64)


class SampleDataset(PairDataset):
    """Warped scikit-image photos with exact keypoints, built offline into a cache folder.

    Args:
        root: cache folder (created; default in the configs ``${paths.data_dir}/sample``).
        split: ``"test"``, ``"val"`` or ``"train"`` (same photos, different warps).
        name / max_side / size / upscale / convert_images / categories / pairs_per_category /
            max_pairs / subset_seed: see
            :class:`semcorr.data.base.PairDataset`.
        seed: seed of the warps.
        photos: which bundled photos (default all of :data:`SHIPPED_PHOTOS`).
        photo_side: shrink the photos to this longer side (px) before warping (None: as shipped).
            300 matches ``max_side``, so the evaluated images are exactly the stored ones.
        pairs_per_photo: warps per photo.
        n_kps: keypoints per pair (at most; the strongest corners that stay inside the target).
        kp_margin: keypoints at least this many original pixels inside the target.
        rotation / scale / translation / tps_jitter: warp ranges, see
            :class:`semcorr.data.warps.WarpRanges`.
    """

    thresholds: ClassVar[tuple[str, ...]] = ("img",)
    splits: ClassVar[tuple[str, ...]] = ("test", "val", "train")

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        name: str | None = "sample",
        max_side: int | None = 300,
        size: tuple[int, int] | None = None,
        upscale: bool = False,
        convert_images: bool = True,
        categories: list[str] | None = None,
        pairs_per_category: int | None = None,
        max_pairs: int | None = None,
        subset_seed: int = 0,
        seed: int = 0,
        photos: list[str] | tuple[str, ...] | None = None,
        photo_side: int | None = 300,
        pairs_per_photo: int = 2,
        n_kps: int = 12,
        kp_margin: float = 4.0,
        rotation: float = math.pi / 12,
        scale: tuple[float, float] = (0.75, 1.25),
        translation: float = 0.25,
        tps_jitter: float = 0.4,
    ) -> None:
        self.seed = int(seed)
        self.photos = tuple(photos) if photos else SHIPPED_PHOTOS
        for photo in self.photos:
            if photo not in SHIPPED_PHOTOS:
                raise ConfigError(f"dataset.photos: unknown photo {photo!r}; valid: {', '.join(SHIPPED_PHOTOS)}")
        if int(pairs_per_photo) < 1 or int(n_kps) < 1:
            raise ConfigError(f"dataset.pairs_per_photo and n_kps must be >= 1, got {pairs_per_photo}, {n_kps}")
        if photo_side is not None and int(photo_side) < 16:
            raise ConfigError(f"dataset.photo_side must be >= 16 or null, got {photo_side}")
        self.photo_side = int(photo_side) if photo_side is not None else None
        self.pairs_per_photo = int(pairs_per_photo)
        self.n_kps = int(n_kps)
        self.kp_margin = float(kp_margin)
        self.ranges = WarpRanges(
            rotation=float(rotation),
            scale=(float(scale[0]), float(scale[1])),
            translation=float(translation),
            tps_jitter=float(tps_jitter),
        )
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

    # -- the cache ----------------------------------------------------------------------------
    def generation_params(self) -> dict:
        """Everything the rendered pairs depend on (hashed into the cache folder's name)."""
        return {
            "version": CACHE_VERSION,
            "split": self.split,
            "seed": self.seed,
            "photos": list(self.photos),
            "photo_side": self.photo_side,
            "pairs_per_photo": self.pairs_per_photo,
            "n_kps": self.n_kps,
            "kp_margin": self.kp_margin,
            "ranges": {
                "rotation": self.ranges.rotation,
                "scale": list(self.ranges.scale),
                "translation": self.ranges.translation,
                "tps_jitter": self.ranges.tps_jitter,
                "min_jacobian": self.ranges.min_jacobian,
                "min_overlap": self.ranges.min_overlap,
            },
        }

    @property
    def cache_dir(self) -> Path:
        """``root/<split>-<hash of the generation parameters>``."""
        params = self.generation_params()
        key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
        return self.root / f"{params['split']}-{key}"

    def check_root(self) -> None:
        """Create ``root`` if needed (the sample dataset builds itself)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetNotFoundError(
                f"{self.name}: cannot create the cache folder {self.root} ({exc}). "
                "Set dataset.root=PATH (or SEMCORR_DATA) to a writable folder."
            ) from exc

    def build(self, folder: Path) -> None:
        """Render the pairs into ``folder`` atomically (temporary folder, then rename)."""
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=self.root))
        except OSError as exc:
            raise DatasetNotFoundError(
                f"{self.name}: cannot write to {self.root} ({exc}). Set dataset.root=PATH to a writable folder."
            ) from exc
        try:
            pairs = []
            for photo in self.photos:
                img = load_photo(photo, self.photo_side)
                h, w = img.shape[:2]
                Image.fromarray(img).save(tmp / f"{photo}.png")
                src = torch.from_numpy(img.copy()).permute(2, 0, 1).double() / 255.0
                corners = torch.from_numpy(corner_candidates(img, min_distance=max(4, round(0.03 * max(h, w)))))
                for k in range(self.pairs_per_photo):
                    warp = sample_warp((h, w), self.ranges, make_generator(self.seed, self.split, photo, k))
                    trg = warp.render(src).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
                    trg_name = f"{photo}-{k}-warp.png"
                    Image.fromarray(trg).save(tmp / trg_name)
                    trg_pts = warp.src_to_trg(corners)
                    keep = inside(trg_pts, h, w, self.kp_margin) & inside(corners, h, w)
                    src_kps, trg_kps = corners[keep][: self.n_kps], trg_pts[keep][: self.n_kps]
                    if len(src_kps) == 0:
                        raise ConfigError(
                            f"{self.name}: no corner of {photo!r} stays inside warp {k}; use milder warp ranges."
                        )
                    pairs.append(
                        {
                            "pair_id": f"{photo}-{k}",
                            "category": photo,
                            "src": f"{photo}.png",
                            "trg": trg_name,
                            "src_kps": src_kps.tolist(),
                            "trg_kps": trg_kps.tolist(),
                            "warp": {
                                "angle": warp.angle,
                                "scale": warp.scale,
                                "translation": list(warp.translation),
                                "jitter": warp.jitter.tolist(),
                            },
                        }
                    )
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is an ordinary folder
            (tmp / "pairs.json").write_text(json.dumps({"params": self.generation_params(), "pairs": pairs}, indent=1))
            if folder.exists() and not (folder / "pairs.json").is_file():
                shutil.rmtree(folder, ignore_errors=True)  # a damaged folder (edited by hand)
            try:
                os.rename(tmp, folder)
            except OSError:
                if not (folder / "pairs.json").is_file():
                    raise
                # Another process finished first: keep its folder.
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def protocol_options(self) -> dict[str, Any]:
        return self.generation_params()

    def load_records(self) -> list[PairRecord]:
        folder = self.cache_dir
        self.pair_source = f"bundled photos, {self.pairs_per_photo} random warps each (seed {self.seed})"
        if not (folder / "pairs.json").is_file():
            self.build(folder)
        data = json.loads((folder / "pairs.json").read_text())
        return [
            PairRecord(
                pair_id=p["pair_id"],
                src_path=folder / p["src"],
                trg_path=folder / p["trg"],
                category=p["category"],
                src_kps=np.asarray(p["src_kps"], dtype=np.float64).reshape(-1, 2),
                trg_kps=np.asarray(p["trg_kps"], dtype=np.float64).reshape(-1, 2),
            )
            for p in data["pairs"]
        ]
