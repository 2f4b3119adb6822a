"""Deep Image Analogy (Liao et al., "Visual Attribute Transfer through Deep Image Analogy",
SIGGRAPH 2017): ``method=dia``.

Modules: :mod:`.patchmatch` (deep PatchMatch, eq. 2, and NNF upsampling, 4.4), :mod:`.deconv`
(sub-networks between pyramid levels and L-BFGS feature inversion, eq. 5), :mod:`.reconstruct`
(warp, deconvolve, blend: eqs. 4-6), :mod:`.aggregate` (patch voting, 4.5), :mod:`.analogy`
(Algorithm 1 and its settings), :mod:`.matcher` (the :class:`DeepImageAnalogy` matcher) and
:mod:`.pictures` (:func:`analogy_pictures`, the pictures of a pair).
"""

from .analogy import AnalogyParams, AnalogyResult, deep_image_analogy
from .matcher import DeepImageAnalogy, nnf_to_flow
from .pictures import analogy_pictures

__all__ = [
    "AnalogyParams",
    "AnalogyResult",
    "analogy_pictures",
    "DeepImageAnalogy",
    "deep_image_analogy",
    "nnf_to_flow",
]
