"""Training: the run driven by a Hydra config, the one LightningModule, its callbacks, sweep summaries."""
