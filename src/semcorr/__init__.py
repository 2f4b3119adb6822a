"""semcorr: semantic correspondence methods in one Lightning + Hydra evaluation loop."""

__version__ = "0.1.0"
