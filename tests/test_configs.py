from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fer.utils import register_resolvers

CONF = Path(__file__).resolve().parents[1] / "conf"
DATA = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF / "model").glob("[!_]*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))

register_resolvers()


def _compose(*overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=False)


CLIP_DATA, CLIP_MODELS = {"baum2"}, {"c3d", "cnn_lstm"}
PAIRS = [(d, m) for d in DATA for m in MODELS if (d in CLIP_DATA) == (m in CLIP_MODELS)]


@pytest.mark.parametrize(("data", "model"), PAIRS)
def test_every_data_and_model_config_composes_and_builds(data, model):
    cfg = _compose(f"data={data}", f"model={model}", "paths.root_dir=.", "paths.output_dir=.")
    dm = instantiate(cfg.data, _convert_="all")
    net_shape = {"num_classes": dm.num_classes, "in_channels": dm.num_channels, "input_size": dm.image_size}
    module = instantiate(cfg.model, net=net_shape, class_names=list(dm.class_names))
    assert module.num_classes == len(dm.class_names) in (7, 8)  # 8: with neutral and contempt
    optim = module.configure_optimizers()
    assert optim["optimizer"].param_groups[0]["lr"] == cfg.model.optimizer.lr


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
