"""The correspondence methods, plain torch behind one interface.

:mod:`.base` holds the interface (:class:`~semcorr.methods.base.Matcher`: ``forward(src, trg, pts,
src_ids, trg_ids, dense=None|"forward"|"backward") -> MatchOutput``). Methods: :mod:`.hpf`
(Hyperpixel Flow), :mod:`.nbb` (Neural Best Buddies), :mod:`.dia` (Deep Image Analogy),
:mod:`.samnet` (SAM-Net), :mod:`.nn` (nearest-neighbour baseline), :mod:`.identity` (identity
baseline). Shared: :mod:`.cache` (LRU cache of per-image features), :mod:`.layer_search` (HPF's
beam search over layer sets).
"""
