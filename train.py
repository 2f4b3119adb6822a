"""Fit a trainable model: ``python train.py model=samnet`` or ``python train.py model=hpf_search``.

Each ``conf/model/*.yaml`` names its ``runner`` (a function taking the composed config); see
README.md for the options.
"""

import hydra
from hydra.utils import get_method
from omegaconf import DictConfig

from semcorr.cli import exit_on_user_error
from semcorr.config import TRAIN, validate_config


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    validate_config(cfg, TRAIN)  # every value before any work
    get_method(cfg.model.runner)(cfg)


if __name__ == "__main__":
    main()
