"""Feature extractors with a stable layer-id convention, and their weight loading.

``load_backbone(name, weights, device)`` returns a frozen :class:`Backbone` whose forward
``backbone(img, layers)`` maps (B, 3, H, W) RGB images in [0, 1] to a list of (B, C_l, H_l, W_l)
features of the requested layer ids, with ``channels``/``stride``/``receptive_field`` per id.
Layer ids: see :mod:`.resnet` (HPF convention), :mod:`.vgg` (relu1_1..relu5_1) and
:mod:`.mobilenet` (``features`` indices).

Modules: :mod:`.base` (the :class:`Backbone` interface), :mod:`.factory` (``load_backbone``),
:mod:`.resnet`, :mod:`.vgg`, :mod:`.mobilenet` (the extractors), :mod:`.weights` (pretrained
weights, offline packages), :mod:`.geometry` (strides and receptive fields) and :mod:`.inversion`
(feature inversion by L-BFGS, for DIA and NBB).
"""

from .base import Backbone
from .factory import BACKBONE_NAMES, load_backbone
from .geometry import LayerGeometry

__all__ = ["BACKBONE_NAMES", "Backbone", "LayerGeometry", "load_backbone"]
