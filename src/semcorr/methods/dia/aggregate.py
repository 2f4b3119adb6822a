"""Patch aggregation (voting) through an NNF: the outputs A' and B of section 4.5, and the warp of
feature maps used by the latent-image reconstruction (section 4.3).

Every source pixel ``p`` is covered by the k x k patches centred on its neighbours ``x = p + d``;
the patch of ``x`` is matched to the target patch centred on ``phi(x)``, whose pixel over ``p`` is
``phi(x) - d``. The output at ``p`` averages the target values at those pixels:

    out(p) = 1/n sum_{d : p + d in source, phi(p + d) - d in target} values(phi(p + d) - d)

This is the reference code's ``avg_vote`` (and ``reconstruct_avg`` for images); the paper writes
4.5 loosely as ``A'(p) = 1/n sum_{x in N(p)} B'(phi(x))``. ``n`` counts the contributing patches
(k * k inside the image). The paper's output patch is 5 x 5 (the reference code uses 3 x 3 at the
pixel level); the feature warp uses the level's PatchMatch patch size, as the reference does.
With k = 1 it is a plain warp (the ``"warp"`` start point of the deconvolution). Hand-written (a
gather per patch offset): no library votes through an NNF.
"""

from __future__ import annotations

import torch
from torch import Tensor


def vote(values: Tensor, nnf: Tensor, patch: int) -> Tensor:
    """Average the target values the overlapping matched patches put on each source pixel.

    Args:
        values: (C, Ht, Wt) target map (an image or a feature map).
        nnf: (Hs, Ws, 2) long target pixels (y, x) of every source pixel.
        patch: k, the side of the square patches (odd).

    Returns:
        (C, Hs, Ws) aggregated map, same dtype as ``values``.
    """
    c, ht, wt = values.shape
    hs, ws, _ = nnf.shape
    half = patch // 2
    # One extra all-zero row: contributions from outside the target read it.
    rows = torch.cat([values.permute(1, 2, 0).reshape(ht * wt, c), values.new_zeros(1, c)])
    total = torch.zeros(hs, ws, c, dtype=values.dtype, device=values.device)
    count = torch.zeros(hs, ws, dtype=values.dtype, device=values.device)
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            # Source pixels p in [y0, y1) x [x0, x1) have their neighbour x = p + d in the source.
            y0, y1 = max(-dy, 0), hs - max(dy, 0)
            x0, x1 = max(-dx, 0), ws - max(dx, 0)
            if y0 >= y1 or x0 >= x1:
                continue
            matched = nnf[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
            ty, tx = matched[..., 0] - dy, matched[..., 1] - dx
            inside = (ty >= 0) & (ty < ht) & (tx >= 0) & (tx < wt)
            index = torch.where(inside, ty * wt + tx, ht * wt).reshape(-1)
            total[y0:y1, x0:x1] += rows.index_select(0, index).reshape(y1 - y0, x1 - x0, c)
            count[y0:y1, x0:x1] += inside
    return (total / count.clamp_min(1.0)[..., None]).permute(2, 0, 1).contiguous()
