"""Hyperpixel Flow (Min et al., ICCV 2019) as a :class:`~semcorr.methods.base.Matcher`.

Per pair: hyperimages of both images (backbone features of the selected layers, cached per
image), hyperpixel matches by regularized Hough matching (or plain nearest neighbour), then the
box-based keypoint transfer. ``fast=True`` (default) uses the exact fast similarity, diagonal
voting and grid transfer; ``fast=False`` the straightforward reference computation. Both give the
same matches up to float rounding (see ``tests/test_hpf.py``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from torch import Tensor

from semcorr.backbones import Backbone
from semcorr.errors import ConfigError
from semcorr.methods.base import Matcher, MatchOutput
from semcorr.methods.cache import LRUCache

from .geometry import HyperpixelGrid
from .hyperimage import FOLD_CHANNELS, HyperImage, build_hyperimage
from .hough import gaussian_kernel
from .rhm import match_fast
from .rhm_reference import match_reference
from .similarity import Workspace
from .transfer import box_transfer, box_transfer_reference, dense_box_transfer


class HyperpixelFlow(Matcher):
    """Hyperpixel Flow: multi-layer hyperpixels matched by regularized Hough matching.

    Args:
        backbone: feature extractor (frozen; it normalises images itself).
        layers: layer ids of the hyperpixels; the smallest is the base. Published sets are in
            ``DESIGN.md`` (e.g. ResNet-101 on PF-PASCAL: ``[2, 17, 21, 22, 25, 26, 28]``).
        rhm: ``True``: regularized Hough matching; ``False``: argmax of the cosine (the ``nn``
            baseline when used with one layer).
        exponent: ``d`` of the appearance similarity ``clamp(cos, 0) ** d``.
        ncells: target number of Hough bins.
        gaussian_size: side of the Gaussian that smooths the votes.
        margin_pruning: drop hyperpixels whose box reaches more than one jump past the image
            border (the reference does, except on Caltech-101).
        cache_size: images whose hyperpixels are kept (keyed by image id and size); 0 disables.
        fast: exact fast path (default) or the straightforward reference computation.
        sparse_k: number of most confident matches returned in ``extras``.
        fold_channels: speed knob of the fast path: coarse layer groups with at most this many
            channels are upsampled and joined to the base features, wider ones go through
            coarse Gram matrices (:mod:`.similarity`). Results are the same up to rounding.

    ``extras`` of :meth:`forward`: ``"sparse_src"`` / ``"sparse_trg"`` (B, K, 2) box centres of
    the ``K = sparse_k`` most confident hyperpixel matches (NaN-padded when fewer exist) and
    ``"sparse_score"`` (B, K) their confidences.
    """

    readout = "box"

    def __init__(
        self,
        backbone: Backbone,
        layers: Sequence[int],
        rhm: bool = True,
        exponent: float = 3.0,
        ncells: int = 8192,
        gaussian_size: int = 7,
        margin_pruning: bool = True,
        cache_size: int = 256,
        fast: bool = True,
        sparse_k: int = 50,
        fold_channels: int = FOLD_CHANNELS,
    ) -> None:
        super().__init__()
        if gaussian_size < 1 or gaussian_size % 2 == 0:
            raise ConfigError(f"method.gaussian_size must be a positive odd number, got {gaussian_size}")
        if ncells < 1:
            raise ConfigError(f"method.ncells must be >= 1, got {ncells}")
        self.backbone = backbone
        self.rhm = bool(rhm)
        self.exponent = float(exponent)
        self.ncells = int(ncells)
        self.margin_pruning = bool(margin_pruning)
        self.fast = bool(fast)
        self.sparse_k = int(sparse_k)
        self.fold_channels = int(fold_channels)
        self.layers = layers
        self.register_buffer("kernel", gaussian_kernel(gaussian_size), persistent=False)
        self.cache: LRUCache[HyperImage] = LRUCache(cache_size)
        self.workspace = Workspace()

    @property
    def layers(self) -> tuple[int, ...]:
        """The hyperpixel layer ids, sorted (the first is the base)."""
        return self._layers

    @layers.setter
    def layers(self, layers: Sequence[int]) -> None:
        ids = tuple(sorted({int(i) for i in layers}))
        if not ids:
            raise ConfigError("method.layers is empty; give at least one layer id (the base)")
        self._strides = tuple(self.backbone.stride(i) for i in ids)  # raises ConfigError on bad ids
        self._layers = ids

    def _cache_key(self, image_id: str, hw: tuple[int, int], layers: tuple[int, ...], device: torch.device) -> Hashable:
        """Cache key of an image's hyperpixels: its name and size and every setting they depend on."""
        return (image_id, hw[0], hw[1], layers, self.margin_pruning, self.fold_channels, self.fast, str(device))

    def hyperimage_from_features(
        self,
        features: Mapping[int, Tensor],
        layers: Sequence[int],
        image_hw: tuple[int, int],
        image_id: str | None = None,
    ) -> HyperImage:
        """Hyperpixels of one image from its layer features (cached by image id and layer set).

        Args:
            features: layer id -> (C_l, h_l, w_l) features of the image (may hold more layers).
            layers: the hyperpixel layer ids (any order; the smallest is the base).
            image_hw: ``(H, W)`` of the image.
            image_id: optional image name, the cache key together with size and layers.

        Returns:
            The :class:`HyperImage`.
        """
        ids = tuple(sorted({int(i) for i in layers}))
        some = features[ids[0]]
        key = self._cache_key(image_id, image_hw, ids, some.device) if image_id is not None else None
        return self.cache.get_or_compute(key, lambda: self._build_hyperimage(features, ids, image_hw))

    def _build_hyperimage(self, features: Mapping[int, Tensor], ids: tuple[int, ...], image_hw: tuple[int, int]) -> HyperImage:
        """The :class:`HyperImage` of ``features`` at the sorted layer ids ``ids`` (no cache)."""
        base = ids[0]
        return build_hyperimage(
            [features[i] for i in ids],
            [self.backbone.stride(i) for i in ids],
            image_hw,
            self.backbone.stride(base),
            self.backbone.receptive_field(base),
            self.margin_pruning,
            self.fold_channels,
            keep_layers=not self.fast,
        )

    def hyperimages(self, imgs: Tensor, ids: Sequence[str] | None = None) -> list[HyperImage]:
        """Hyperpixels of a batch of images, from the cache where possible.

        Args:
            imgs: (B, 3, H, W) RGB in [0, 1].
            ids: optional image names of length B (cache keys together with the size).

        Returns:
            B :class:`HyperImage` objects.
        """
        b, _, h, w = imgs.shape
        keys = [self._cache_key(ids[i], (h, w), self._layers, imgs.device) if ids is not None else None for i in range(b)]

        def compute(missing: list[int]) -> list[HyperImage]:
            with torch.no_grad():
                feats = self.backbone(imgs[missing], self._layers)
            return [self._build_hyperimage({layer: f[n] for layer, f in zip(self._layers, feats)}, self._layers, (h, w))
                    for n in range(len(missing))]

        return self.cache.get_many(keys, compute)

    def clear_cache(self) -> None:
        """Forget cached hyperpixels and release scratch memory."""
        self.cache.clear()
        self.workspace.clear()

    def match(self, src: HyperImage, trg: HyperImage) -> tuple[Tensor, Tensor] | None:
        """Hyperpixel matches of one pair.

        Args:
            src / trg: hyperimages with ``Ns`` and ``Nt`` hyperpixels.

        Returns:
            ``(match, score)``: (Ns,) int64 target index per source hyperpixel and (Ns,) its
            confidence; None when either image has no hyperpixel left.
        """
        if src.grid.size == 0 or trg.grid.size == 0:
            return None
        args = (src, trg, self.rhm, self.exponent, self.ncells, self.kernel)
        if self.fast:
            return match_fast(*args, self.workspace)
        return match_reference(*args)

    def _transfer_matched(self, src: HyperpixelGrid, trg: HyperpixelGrid, match: Tensor, points: Tensor) -> Tensor:
        """The keypoint transfer rule for matched grids: fast grid form or the reference form."""
        if self.fast:
            return box_transfer(src, trg, match, points)
        return box_transfer_reference(src.boxes(match.device), trg.boxes(match.device), match, points)

    @torch.no_grad()
    def transfer(self, src: HyperImage, trg: HyperImage, points: Tensor) -> Tensor:
        """Match one pair of hyperimages and transfer points.

        Args:
            src / trg: hyperimages of the pair.
            points: (N, 2) source points (x, y), NaN rows allowed.

        Returns:
            (N, 2) target points; NaN where no kept box holds a point (or no hyperpixel is left).
        """
        found = self.match(src, trg)
        if found is None:
            return torch.full_like(points, float("nan"))
        return self._transfer_matched(src.grid, trg.grid, found[0], points)

    @torch.no_grad()
    def forward(
        self,
        src_img: Tensor,
        trg_img: Tensor,
        src_points: Tensor,
        src_ids: list[str] | None = None,
        trg_ids: list[str] | None = None,
        dense: str | None = None,
    ) -> MatchOutput:
        """Transfer points from source to target (see :meth:`Matcher.forward`).

        The dense flow (``dense="forward"``) is the hyperpixel flow field: every source pixel
        transferred by the keypoint rule with the pair's one matching; ``dense="backward"``
        matches the reversed pair (target -> source), the only way HPF has a reverse field.

        Args:
            src_img: (B, 3, Hs, Ws) in [0, 1].
            trg_img: (B, 3, Ht, Wt) in [0, 1].
            src_points: (B, N, 2) source points (x, y), NaN-padded.
            src_ids / trg_ids: optional image names for the feature cache.
            dense: None, ``"forward"`` or ``"backward"``.

        Returns:
            :class:`MatchOutput` with ``points`` (B, N, 2), the sparse matches in ``extras`` and
            ``flow`` when asked (NaN where no kept box holds the pixel).
        """
        b = src_img.shape[0]
        srcs = self.hyperimages(src_img, src_ids)
        trgs = self.hyperimages(trg_img, trg_ids)
        nan = float("nan")
        points = torch.full_like(src_points, nan)
        k = self.sparse_k
        sparse_src = src_points.new_full((b, k, 2), nan)
        sparse_trg = src_points.new_full((b, k, 2), nan)
        sparse_score = src_points.new_full((b, k), nan)
        flow = None
        if dense is not None:
            grid_of = src_img if dense == "forward" else trg_img
            flow = src_img.new_full((b, 2, *grid_of.shape[-2:]), nan)
        for i in range(b):
            found = self.match(srcs[i], trgs[i])
            if found is None:
                continue
            match, score = found
            sg, tg = srcs[i].grid, trgs[i].grid
            points[i] = self._transfer_matched(sg, tg, match, src_points[i])
            top = score.topk(min(k, score.numel()))
            n = top.indices.numel()
            sparse_src[i, :n] = sg.centres(match.device)[top.indices]
            sparse_trg[i, :n] = tg.centres(match.device)[match[top.indices]]
            sparse_score[i, :n] = top.values
            if dense == "forward":
                flow[i] = dense_box_transfer(sg, tg, match)
            elif dense == "backward":
                reverse = self.match(trgs[i], srcs[i])
                if reverse is not None:
                    flow[i] = dense_box_transfer(tg, sg, reverse[0])
        extras = {"sparse_src": sparse_src, "sparse_trg": sparse_trg, "sparse_score": sparse_score}
        return MatchOutput(points, extras, flow)
