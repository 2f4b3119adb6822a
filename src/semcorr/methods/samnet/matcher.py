"""SAM-Net as a :class:`~semcorr.methods.base.Matcher`: ``python evaluate.py method=samnet
method.checkpoint=PATH``.

The matcher rebuilds the network from a checkpoint written by ``python train.py model=samnet``
(:mod:`semcorr.lit.samnet`): the network's settings and the training image size are read from its
``samnet`` record (:data:`CKPT_KEY`) and its weights (backbone included) are loaded strictly into
the backbone given by the config (it must be the backbone the checkpoint was trained with).
``attribute_weight`` may differ from the training's at test (the "wo/Att." ablation on the same
weights). :attr:`SAMNetMatcher.trained_on` is the record's list of training pairs (the protocol
record of every evaluation says what the weights saw).

Per pair, both images are resized (bilinear) to the network size (default: the training size),
the network runs ``iterations`` times (10 at test in the paper; by default the checkpoint's
``model.val_iterations``, the count its training validated with), and each source point is
mapped through the final affine field (:func:`~.affine.transfer_points`): original source pixels
-> network pixels (x * Wn / Ws, the dataset convention) -> feature cells -> target cells ->
network pixels -> original target pixels.

``extras`` of :meth:`SAMNetMatcher.forward`:

* ``"attribute_transfer"`` (B, 3, Hs, Ws): the final ``I^{s<-t,L}`` (source content with the
  target's attributes), resized to the source size;
* ``"warped_target"`` (B, 3, Hs, Ws): the target brought onto the source through the dense
  field (the paper's Fig. 4 warped images).

With ``save_pictures=true`` each pictured pair gets ``<pair>/samnet.png`` (source, target,
attribute-transferred source, target warped onto the source: the paper's Fig. 4 row) and
``<pair>/attribute_transfer.png`` (:meth:`SAMNetMatcher.pair_pictures`).

The evaluation pictures' source-onto-target panel needs the target -> source field, a second
pass with the images swapped: the picture writer asks for it (``dense="backward"``) for the
pictured pairs only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from semcorr.backbones import Backbone
from semcorr.errors import ConfigError, WeightsError
from semcorr.io import read_torch
from semcorr.methods.base import Matcher, MatchOutput, PairFile, Strip

from .affine import dense_image_flow, transfer_image_points, warp_image
from .network import SAMNet, SAMNetOutput

#: The command that makes a checkpoint, named in every error about a missing one.
TRAIN_HINT = (
    "Train SAM-Net first: `python train.py model=samnet` (paper setup; on a CPU: "
    "`python train.py model=samnet experiment=samnet_cpu`). It prints the checkpoint and the "
    "command to evaluate it: `python evaluate.py method=samnet method.checkpoint=PATH`."
)

#: Labels of the panels of the ``samnet`` picture.
STRIP_LABELS = ["source", "target", "attribute transfer I^{s<-t}", "target warped onto the source"]
#: Recurrent iterations at test in the paper.
TEST_ITERATIONS = 10

#: Prefix of the network's keys in the LightningModule's state_dict.
STATE_PREFIX = "net."

#: Key of SAM-Net's own record in a Lightning checkpoint (written by the training module).
CKPT_KEY = "samnet"
#: What the matcher reads from that record (``trained_on``: checkpoints of this version on).
RECORD_KEYS = ("network", "backbone", "image_size", "val_iterations", "trained_on")


def chosen_checkpoint(path: str | Path) -> Path:
    """The ``.ckpt`` a ``method.checkpoint`` value names: a file as it is, or, for the run directory
    of ``python train.py model=samnet``, the checkpoint its model selection chose (the one
    ``checkpoints/final.json`` names, read from under that directory, so a moved or copied run
    gives its own file).

    Raises:
        WeightsError: a directory without a readable ``checkpoints/final.json`` (the run has not
            finished, or it is not a SAM-Net run).
    """
    file = Path(path).expanduser()
    if not file.is_dir():
        return file
    final = file / "checkpoints" / "final.json"
    try:
        chosen = Path(json.loads(final.read_text())["checkpoint"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise WeightsError(
            f"method.checkpoint={str(file)!r} is a folder, and {final} cannot be read ({err.__class__.__name__}): give a "
            f"finished SAM-Net training run (its checkpoints/final.json names the chosen checkpoint) or a .ckpt file. {TRAIN_HINT}"
        ) from err
    inside = file / "checkpoints" / chosen.parent.name / chosen.name  # the same file, or its copy in a moved run
    return inside if inside.is_file() else chosen


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a SAM-Net Lightning checkpoint (tensors and plain values only: ``weights_only``).

    Args:
        path: the ``.ckpt`` file.

    Returns:
        The checkpoint dict (``state_dict``, ``samnet`` (:data:`CKPT_KEY`): ``network`` settings,
        ``backbone`` name, ``image_size``, ``val_iterations``, ``trained_on``, ``stage``; ...).

    Raises:
        WeightsError: missing, unreadable (one line naming the file and the fix, never torch's
            advice to load unsafely), or not a SAM-Net checkpoint of this version (the message
            names the record keys it lacks).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise WeightsError(f"SAM-Net checkpoint {str(file)!r} does not exist. {TRAIN_HINT}")
    ckpt = read_torch(file, WeightsError, f"Give method.checkpoint a .ckpt written by train.py. {TRAIN_HINT}")
    record = ckpt.get(CKPT_KEY, {}) if isinstance(ckpt, Mapping) else {}
    missing = [k for k in RECORD_KEYS if not isinstance(record, Mapping) or k not in record]
    if missing or "state_dict" not in ckpt:
        lacks = f"its {CKPT_KEY!r} record lacks {', '.join(missing)}" if missing else "it has no state_dict"
        raise WeightsError(f"{str(file)!r} is not a SAM-Net checkpoint of this version ({lacks}). {TRAIN_HINT}")
    return dict(ckpt)


def network_state(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The :class:`SAMNet` part of a LightningModule ``state_dict`` (``net.`` prefix removed)."""
    return {k[len(STATE_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(STATE_PREFIX)}


def resize(img: Tensor, size: Sequence[int]) -> Tensor:
    """(B, 3, H, W) -> (B, 3, size[0], size[1]), bilinear (the datasets' resize); no-op if equal."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    return F.interpolate(img, size=tuple(size), mode="bilinear", align_corners=False)


class SAMNetMatcher(Matcher):
    """Semantic attribute matching networks (Kim et al., CVPR 2019) for keypoint and dense transfer.

    Args:
        checkpoint: a checkpoint of ``python train.py model=samnet``, or that run's directory (the
            checkpoint its ``checkpoints/final.json`` chose, :func:`chosen_checkpoint`); required
            unless ``network`` is given.
        backbone: the feature extractor the checkpoint was trained with (``${backbone.net}``);
            its weights are replaced by the checkpoint's.
        iterations: recurrent iterations at test; None: the checkpoint's validation count
            (``model.val_iterations``: 10, the paper's, unless the training preset says otherwise;
            :data:`TEST_ITERATIONS` for a ``network``).
        size: (H, W) network input size; None: the checkpoint's training size.
        network: an already built :class:`SAMNet` instead of a checkpoint (then ``size`` is
            required), e.g. an untrained network for a baseline.
        attribute_weight: ``"paper"`` or ``"zero"`` (``lambda^l`` of eq. 5, see
            :class:`~.network.SAMNet`); None: the checkpoint's.

    Raises:
        ConfigError: no checkpoint, a different backbone, a bad size.
        WeightsError: the checkpoint is missing or unreadable or its weights do not fit.
    """

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        backbone: Backbone | None = None,
        iterations: int | None = None,
        size: Sequence[int] | None = None,
        network: SAMNet | None = None,
        attribute_weight: str | None = None,
    ) -> None:
        super().__init__()
        if network is None:
            if checkpoint is None or str(checkpoint) in ("", "???"):
                raise ConfigError(f"method.checkpoint is required for SAM-Net (a trained checkpoint). {TRAIN_HINT}")
            checkpoint = chosen_checkpoint(checkpoint)
            ckpt = read_checkpoint(checkpoint)
            network = self._build(ckpt, backbone, str(checkpoint), attribute_weight)
            record = ckpt[CKPT_KEY]
            size = record["image_size"] if size is None else size
            iterations = record["val_iterations"] if iterations is None else iterations
            self.trained_on = tuple(record["trained_on"])
        elif attribute_weight is not None:
            raise ConfigError("method.attribute_weight applies to a checkpoint; build the network with it instead")
        iterations = TEST_ITERATIONS if iterations is None else iterations
        if size is None or len(size) != 2 or min(int(s) for s in size) < 16:
            raise ConfigError(f"method.size must be [H, W] with H, W >= 16 (or null for the training size), got {size}")
        if int(iterations) < 1:
            raise ConfigError(f"method.iterations must be >= 1, got {iterations}")
        self.net = network.eval()
        self.size = (int(size[0]), int(size[1]))
        self.iterations = int(iterations)

    @property
    def backbone(self) -> Backbone:
        """The network's feature extractor (the protocol record reads its name)."""
        return self.net.backbone

    @staticmethod
    def _build(ckpt: Mapping[str, Any], backbone: Backbone | None, where: str, attribute_weight: str | None) -> SAMNet:
        """The network of a checkpoint on ``backbone``, with the checkpoint's weights loaded."""
        record = ckpt[CKPT_KEY]
        trained_with = str(record["backbone"])
        if backbone is None:
            raise ConfigError(
                f"SAM-Net needs the backbone it was trained with ({trained_with}): pass backbone={trained_with}"
            )
        if backbone.name != trained_with:
            raise ConfigError(
                f"SAM-Net checkpoint {where!r} was trained with backbone {trained_with!r}, but the config gives "
                f"{backbone.name!r}: add backbone={trained_with} to the command."
            )
        settings = dict(record["network"])
        if attribute_weight is not None:
            settings["attribute_weight"] = attribute_weight
        network = SAMNet(backbone, **settings)
        try:
            network.load_state_dict(network_state(ckpt["state_dict"]), strict=True)
        except RuntimeError as err:
            raise WeightsError(f"SAM-Net checkpoint {where!r} does not fit the network it describes: {err}") from err
        return network

    def run(self, src_img: Tensor, trg_img: Tensor) -> SAMNetOutput:
        """The network's output at the network size (every iteration kept).

        Args:
            src_img / trg_img: (B, 3, H, W) / (B, 3, H', W') images in [0, 1], any sizes.

        Returns:
            :class:`~.network.SAMNetOutput` for the resized pair.
        """
        return self.net(resize(src_img, self.size), resize(trg_img, self.size), self.iterations)

    def forward(
        self,
        src_img: Tensor,
        trg_img: Tensor,
        src_points: Tensor,
        src_ids: list[str] | None = None,
        trg_ids: list[str] | None = None,
        dense: str | None = None,
    ) -> MatchOutput:
        """Transfer source points to the target (see the module docstring for ``extras``).

        Args:
            src_img: (B, 3, Hs, Ws). trg_img: (B, 3, Ht, Wt). src_points: (B, N, 2), NaN-padded.
            src_ids / trg_ids: unused.
            dense: None; ``"forward"``: the source -> target flow of the same pass;
                ``"backward"``: the target -> source flow, from a pass on the reversed pair (the
                network's field goes one way only).

        Returns:
            :class:`MatchOutput` with ``points`` (B, N, 2) in target pixels and ``flow`` when asked.
        """
        src_hw, trg_hw = tuple(src_img.shape[-2:]), tuple(trg_img.shape[-2:])
        out = self.run(src_img, trg_img)
        field = out.final.field
        points = transfer_image_points(field, src_points.to(field.dtype), src_hw, trg_hw, self.size)
        forward_flow = dense_image_flow(field, src_hw, trg_hw, self.size)
        extras = {
            "attribute_transfer": resize(out.final.image, src_hw),
            "warped_target": warp_image(trg_img, forward_flow),
        }
        flow = None
        if dense == "forward":
            flow = forward_flow
        elif dense == "backward":
            flow = dense_image_flow(self.run(trg_img, src_img).final.field, trg_hw, src_hw, self.size)
        return MatchOutput(points=points, extras=extras, flow=flow)

    def pair_pictures(self, src_img: Tensor, trg_img: Tensor, output: MatchOutput, index: int) -> dict[str, PairFile]:
        """Attribute transfer of a pictured pair: ``samnet`` (source, target, ``I^{s<-t,L}`` and the
        target warped onto the source side by side, the paper's Fig. 4 row) and
        ``attribute_transfer`` (``I^{s<-t,L}`` alone), from this pair's ``extras``."""
        transferred = output.extras["attribute_transfer"][index]
        strip = Strip([src_img, trg_img, transferred, output.extras["warped_target"][index]], labels=list(STRIP_LABELS))
        return {"samnet": strip, "attribute_transfer": transferred}
