"""Deep Image Analogy's deconvolution (eq. 5, section 4.3) in the paper's form or the reference
code's: the latent features R^{L-1} whose forward pass reproduces the warped level-L features,
by feature inversion (:mod:`semcorr.backbones.inversion`: the sub-networks between levels and the
L-BFGS solver, with the notes on line search, history size and bfloat16).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from semcorr.backbones.inversion import deconvolve

@dataclass
class Deconvolution:
    """One latent-feature reconstruction of eq. 5, in either form (see :mod:`.analogy`).

    Attributes:
        to_target: the sub-network from the optimised variable to the level-L target features.
        to_output: None when the variable is R^{L-1} itself (the paper's form); else the
            sub-network from the variable to level L-1 (the reference code's form: the variable is
            one level further down and ``R^{L-1} = to_output(X)``).
        iterations / bf16 / line_search: see :func:`deconvolve`.
    """

    to_target: nn.Module
    to_output: nn.Module | None
    iterations: int
    bf16: bool
    line_search: bool

    def __call__(self, target: Tensor, init: Tensor) -> Tensor:
        """R^{L-1} for (B, C_L, H_L, W_L) targets from (B, C_v, H_v, W_v) start points.

        Returns:
            (B, C_{L-1}, H_{L-1}, W_{L-1}) float32 features, detached.
        """
        solved = deconvolve(self.to_target, target, init, self.iterations, self.bf16, self.line_search)
        if self.to_output is None:
            return solved
        with torch.no_grad(), torch.autocast(solved.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.to_output(solved).float()
