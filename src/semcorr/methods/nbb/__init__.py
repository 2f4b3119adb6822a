"""Neural Best Buddies (Aberman et al., "Neural Best-Buddies: Sparse Cross-Domain Correspondence",
SIGGRAPH 2018): ``method=nbb``.

Modules: :mod:`.buddies` (eqs. 1-3), :mod:`.appearance` (eqs. 4-6), :mod:`.selection` (eqs. 7-8,
11 and the k-means top-k), :mod:`.pyramid` (Algorithm 1, eqs. 9-10), :mod:`.mls` (moving least
squares), :mod:`.densify` (which buddies the dense map interpolates), :mod:`.alignment`
(section 5.1 alignment, morph frames, their pictures), :mod:`.hybrid` (section 5.2 semantic
hybrids) and :mod:`.matcher` (the :class:`NeuralBestBuddies` matcher).
"""

from .alignment import align_pair, alignment_pictures, correspondence_record
from .matcher import Correspondences, NeuralBestBuddies
from .mls import leave_one_out, mls_grid, mls_map

__all__ = [
    "Correspondences",
    "NeuralBestBuddies",
    "align_pair",
    "alignment_pictures",
    "correspondence_record",
    "leave_one_out",
    "mls_grid",
    "mls_map",
]
