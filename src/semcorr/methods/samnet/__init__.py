"""SAM-Net (Kim et al., "Semantic Attribute Matching Networks", CVPR 2019): ``method=samnet``.

Modules: :mod:`.affine` (dense affine fields, sampling, point transfer), :mod:`.correlation`
(eq. 5 local correlation, eq. 9 confidence), :mod:`.matching` (eqs. 6-7 residual field U-Net),
:mod:`.blending` (eq. 8 neural patch blending), :mod:`.decoder` (eq. 10 droplink decoder),
:mod:`.network` (the recurrent :class:`SAMNet`), :mod:`.losses` (eqs. 2, 11-13 and smoothness),
:mod:`.matcher` (:class:`SAMNetMatcher`). Training lives in :mod:`semcorr.lit.samnet`.
No public SAM-Net code exists; everything here follows the paper, with the choices it leaves
open stated in each module's docstring.
"""

from .losses import SAMNetLoss
from .matcher import SAMNetMatcher
from .network import SAMNet, SAMNetIteration, SAMNetOutput

__all__ = ["SAMNet", "SAMNetIteration", "SAMNetLoss", "SAMNetMatcher", "SAMNetOutput"]
