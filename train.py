"""Fit a trainable model: ``python train.py model=samnet`` or ``python train.py model=hpf_search``.

One entry for every model (:func:`semcorr.lit.train.train`): it seeds, makes the run directory,
writes the config and calls the model's runner (``model.runner`` in ``conf/model/*.yaml``); see
README.md for the options.
"""

import hydra
from omegaconf import DictConfig

from semcorr.cli import exit_on_user_error
from semcorr.config import TRAIN, validate_config
from semcorr.lit.train import train


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    validate_config(cfg, TRAIN)  # every value before any work
    train(cfg)


if __name__ == "__main__":
    main()
