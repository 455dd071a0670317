from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fer.config import register_resolvers
from fer.training.run import build_model

CONF = Path(__file__).resolve().parents[1] / "conf"
DATA = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF / "model").glob("[!_]*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))

register_resolvers()


def _compose(*overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=False)


CLIP_DATA, CLIP_MODELS = {"baum2"}, {"c3d", "cnn_lstm", "frame_average"}
FEATURE_DATA, FEATURE_MODELS = {d for d in DATA if d.endswith("_landmarks")}, {"landmark_mlp"}


def _fits(data: str, model: str) -> bool:
    return (data in CLIP_DATA) == (model in CLIP_MODELS) and (data in FEATURE_DATA) == (model in FEATURE_MODELS)


# model=ensemble is built from trained checkpoints (tests/test_ensemble.py)
PAIRS = [(d, m) for d in DATA for m in MODELS if _fits(d, m) and m != "ensemble"]
MISFITS = [("fer2013", "c3d"), ("baum2", "deep_cnn"), ("fer2013_landmarks", "deep_cnn"), ("fer2013", "landmark_mlp")]


@pytest.mark.parametrize(("data", "model"), PAIRS)
def test_every_data_and_model_config_composes_and_builds(data, model):
    cfg = _compose(f"data={data}", f"model={model}", "paths.root_dir=.", "paths.output_dir=.")
    dm = instantiate(cfg.data, _convert_="all")
    module = build_model(cfg, dm)
    assert module.hparams.net["num_classes"] == dm.num_classes
    # the network was built for the data's inputs (or the crops the classifier cuts from them)
    assert (
        module.hparams.net.items()
        >= (dm.input_spec | ({"input_size": cfg.model.crop} if cfg.model.crop else {})).items()
    )
    # channels-last exactly where the network has 2-D convolutions
    assert module.hparams.channels_last == (model not in ("landmark_mlp", "c3d"))
    assert module.num_classes == len(dm.class_names) in (7, 8)  # 8: with neutral and contempt
    module.trainer = pl.Trainer(max_epochs=cfg.trainer.max_epochs, logger=False, enable_checkpointing=False)
    optim = module.configure_optimizers()
    assert optim["optimizer"].param_groups[0]["lr"] == cfg.model.optimizer.lr
    assert optim["lr_scheduler"]["scheduler"].T_max == cfg.trainer.max_epochs  # the cosine spans the run


@pytest.mark.parametrize(("data", "model"), MISFITS)
def test_a_network_that_does_not_take_the_datas_inputs_is_refused(data, model):
    cfg = _compose(f"data={data}", f"model={model}", "paths.root_dir=.", "paths.output_dir=.")
    with pytest.raises(
        Exception,
        match=r"(unexpected keyword argument|required keyword-only argument)\W+(clip_length|in_features|in_channels)",
    ):
        build_model(cfg, instantiate(cfg.data, _convert_="all"))


def test_augment_is_a_group():
    assert _compose("data/augment=none").data.augment.rotation == 0
    assert _compose("data=baum2", "paths.root_dir=.").data.augment == {**_compose().data.augment, "erase": 0.0}
    assert _compose("data.augment=null").data.augment is None


TRAINERS = sorted(f"trainer={p.stem}" for p in (CONF / "trainer").glob("*.yaml"))


@pytest.mark.parametrize("group", [*TRAINERS, "logger=none", "callbacks=none"])
def test_other_groups_compose(group):
    cfg = _compose(group, "paths.root_dir=.", "paths.output_dir=.")
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"


def test_slurm_ddp_launcher_asks_one_task_per_gpu_on_every_node():
    overrides = ["hydra/launcher=slurm_ddp", "trainer=multinode", "trainer.devices=4", "trainer.num_nodes=3"]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (3, 4, 4)
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.num_nodes == 3
    assert type(instantiate(launcher)).__name__ == "SlurmLauncher"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiments_compose(experiment):
    cfg = _compose(f"experiment={experiment}", "paths.root_dir=.", "paths.output_dir=.")
    # the real data sets of ../shared/data, never the embedded sample
    assert "../shared/data/" in OmegaConf.to_yaml(cfg.data, resolve=True)


def test_typos_fail_with_hydras_error():
    with pytest.raises(ConfigCompositionException, match="modle"):
        _compose("modle=deep_cnn")
    with pytest.raises(ConfigCompositionException, match="batch_sise"):
        _compose("data.batch_sise=8")
    with pytest.raises(ConfigCompositionException, match="deeep"):
        _compose("model=deeep")
