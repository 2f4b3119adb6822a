"""The nearest-neighbour baseline: one backbone layer, cosine similarity, a read-out per query point.

For a source query point p (pixels): its feature is sampled bilinearly from the source layer at
``p / stride`` (cell (i, j) of a stride-s layer sits at pixel (j s, i s): the centre of its
receptive field for the padded convolutions of torchvision's networks, and the convention of HPF's
geometry), L2-normalised, and compared with every L2-normalised target cell q: ``c_q = cos``. The
read-out turns the (h, w) similarity map of the query into a target point:

* ``argmax``: the centre of the most similar target cell (the plain nearest neighbour, how
  training-free feature benchmarks such as DIFT score features);
* ``soft_argmax``: the expectation of the cell centres under ``softmax(c / temperature)`` (the
  soft argmax of SFNet, Lee et al. CVPR 2019, and CATs; their temperature 0.02 is the default);
* ``kernel_soft_argmax``: SFNet's kernel soft argmax: the similarities are multiplied by a
  Gaussian ``exp(-|q - q*|^2 / (2 sigma^2))`` around the argmax cell q* (sigma in cells, SFNet's 5)
  before the soft argmax, so a second mode far away cannot pull the expectation off the peak;
* ``box``: HPF's keypoint transfer through receptive-field boxes of the cell matches
  (:class:`~semcorr.methods.hpf.HyperpixelFlow` with this one layer and no Hough matching): the
  former ``nn`` baseline, kept for comparison; it averages the matches of every box holding the
  point, and answers NaN where margin pruning left none.

Choices where the references are silent: the query feature is sampled bilinearly (not the nearest
cell), clamped to the border cells; a NaN query gives a NaN prediction. Plain torch: the
similarity is one matrix product per pair (no library does the read-outs on cell grids).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from semcorr.backbones import Backbone
from semcorr.errors import ConfigError
from semcorr.methods.base import Matcher, MatchOutput
from semcorr.grid import pixel_points, sample_at
from semcorr.methods.cache import LRUCache
from semcorr.methods.hpf import HyperpixelFlow

#: The read-outs (see the module docstring).
READOUTS = ("argmax", "soft_argmax", "kernel_soft_argmax", "box")


def cell_centres(height: int, width: int, stride: int, device=None) -> Tensor:
    """(h w, 2) pixel coordinates (x, y) of the cells of an (h, w) layer, row-major."""
    return pixel_points(height, width, device) * float(stride)


def read_out(sim: Tensor, stride: int, readout: str, temperature: float = 0.02, sigma: float = 5.0) -> Tensor:
    """Target points of queries from their similarity maps.

    Args:
        sim: (N, h, w) similarity of each query to every target cell.
        stride: pixels between target cells.
        readout: ``"argmax"``, ``"soft_argmax"`` or ``"kernel_soft_argmax"``.
        temperature: softmax temperature of the soft read-outs.
        sigma: Gaussian width (cells) of ``kernel_soft_argmax``.

    Returns:
        (N, 2) target points (x, y) in pixels.
    """
    n, h, w = sim.shape
    centres = cell_centres(h, w, stride, sim.device)  # (h w, 2)
    flat = sim.reshape(n, h * w)
    best = flat.argmax(dim=1)
    if readout == "argmax":
        return centres[best]
    if readout == "kernel_soft_argmax":
        cells = centres / float(stride)
        d2 = ((cells[None] - cells[best][:, None]) ** 2).sum(-1)  # (N, h w) squared cell distances
        flat = flat * torch.exp(-d2 / (2.0 * sigma**2))
    elif readout != "soft_argmax":
        raise ConfigError(f"method.readout must be one of {', '.join(READOUTS)}, got {readout!r}")
    weights = torch.softmax(flat / temperature, dim=1)
    return weights @ centres


class NearestNeighbour(Matcher):
    """Nearest neighbour of one backbone layer's features (see the module docstring).

    Args:
        backbone: feature extractor (frozen).
        layer: the layer id whose features are matched.
        readout: one of :data:`READOUTS`.
        temperature: softmax temperature of ``soft_argmax`` / ``kernel_soft_argmax``.
        sigma: Gaussian width in cells of ``kernel_soft_argmax``.
        margin_pruning: ``box`` read-out only: HPF's margin pruning of the boxes.
        cache_size: images whose features are kept (pairs sharing an image); 0 disables.
    """

    def __init__(
        self,
        backbone: Backbone,
        layer: int,
        readout: str = "argmax",
        temperature: float = 0.02,
        sigma: float = 5.0,
        margin_pruning: bool = True,
        cache_size: int = 256,
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ConfigError(f"method.readout must be one of {', '.join(READOUTS)}, got {readout!r}")
        if not temperature > 0 or not sigma > 0:
            raise ConfigError(f"method.temperature and method.sigma must be > 0, got {temperature} and {sigma}")
        self.backbone = backbone
        self.layer = int(layer)
        self.stride = backbone.stride(self.layer)  # raises ConfigError on a bad id
        self.readout = readout
        self.temperature, self.sigma = float(temperature), float(sigma)
        self.box = HyperpixelFlow(backbone, [self.layer], rhm=False, margin_pruning=margin_pruning,
                                  cache_size=cache_size) if readout == "box" else None
        #: recorded in the protocol only where it applies (the box read-out)
        self.margin_pruning = bool(margin_pruning) if readout == "box" else None
        self.cache: LRUCache[Tensor] = LRUCache(cache_size)

    def features(self, imgs: Tensor, ids: Sequence[str] | None) -> list[Tensor]:
        """(C, h, w) features of each image of a (B, 3, H, W) batch, from the cache where possible."""
        keys = [(ids[i], *imgs.shape[-2:], str(imgs.device)) if ids is not None else None for i in range(len(imgs))]

        def compute(missing: list[int]) -> list[Tensor]:
            with torch.no_grad():
                (feats,) = self.backbone(imgs[missing], [self.layer])
            return list(feats)

        return self.cache.get_many(keys, compute)

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
        """Transfer points (see :meth:`Matcher.forward`): src_points (B, N, 2) -> points (B, N, 2).

        The dense flow (``dense=``) transfers every pixel by the read-out
        (:meth:`Matcher.flow_from_points`; ``"backward"`` with the images swapped); the box read-out
        gives HPF's dense transfer.
        """
        if self.box is not None:
            return self.box(src_img, trg_img, src_points, src_ids, trg_ids, dense)
        flow = None
        if dense == "forward":
            flow = self.flow_from_points(src_img, trg_img, src_ids, trg_ids)
        elif dense == "backward":
            flow = self.flow_from_points(trg_img, src_img, trg_ids, src_ids)
        points = torch.full_like(src_points, float("nan"))
        srcs, trgs = self.features(src_img, src_ids), self.features(trg_img, trg_ids)
        for i in range(src_img.shape[0]):
            valid = torch.isfinite(src_points[i]).all(dim=1)
            if not valid.any():
                continue
            query = src_points[i][valid].to(srcs[i].dtype) / self.stride  # (n, 2) in cells
            sampled = sample_at(srcs[i][None], query.T[None, :, :, None], padding_mode="border")[0, :, :, 0]  # (C, n)
            q = F.normalize(sampled.T, dim=1)
            c, h, w = trgs[i].shape
            t = F.normalize(trgs[i].reshape(c, h * w), dim=0)
            sim = (q @ t).reshape(-1, h, w)
            points[i][valid] = read_out(sim, self.stride, self.readout, self.temperature, self.sigma).to(points.dtype)
        return MatchOutput(points, flow=flow)
