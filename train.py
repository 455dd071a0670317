"""Train and test an expression classifier: ``python train.py [overrides]`` (see README)."""

import hydra
from omegaconf import DictConfig

from fer.config import register_resolvers
from fer.training.run import train

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric", ""))


if __name__ == "__main__":
    main()
