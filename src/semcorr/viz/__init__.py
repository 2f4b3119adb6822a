"""Pictures and plots: :mod:`.pictures` (keypoint matches marked against the ground truth, the
evaluation's picture writer), :mod:`.strip` (images side by side as PNG files, the methods'
per-pair pictures) and :mod:`.plots` (the comparison report's curves and bars).
"""
