"""Evaluate a semantic correspondence method on a benchmark: ``python evaluate.py method=hpf dataset=spair``.

See README.md for the options; ``python evaluate.py --help`` lists the config groups.
"""

import hydra
from omegaconf import DictConfig

from semcorr.cli import exit_on_user_error
from semcorr.lit.evaluation_runner import run_evaluation


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    run_evaluation(cfg)


if __name__ == "__main__":
    main()
