"""Recipe levers of issue 15, each a config key: EMA weights, MixUp / CutMix, SGD schedules, ten crops, distillation.

Short in-process runs on the FER-2013 sample shipped in the package.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fer.checkpoint import CheckpointError, load_predictor, read_checkpoint
from fer.data import FER2013DataModule
from fer.predictor import VIEWS, ExpressionPredictor
from fer.shipped import shipped_model
from fer.training.module import EmotionClassifier
from fer.training.run import train

NET = {"_target_": "fer.models.CNN4", "num_classes": 7, "in_channels": 1, "input_size": 48}


def _scalars(run_dir, tag: str) -> list[float]:
    values = []
    for events in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        tb = EventAccumulator(str(events))
        tb.Reload()
        if tag in tb.Tags()["scalars"]:
            values += [e.value for e in tb.Scalars(tag)]
    return values


def _accuracy(model, datamodule, split: str, n: int) -> float:
    images, labels = datamodule.splits[split].tensors
    x = datamodule.on_after_batch_transfer((images[:n], labels[:n]), 0)[0]
    with torch.inference_mode():
        return (model.eval()(x).argmax(1) == labels[:n]).float().mean().item()


def test_ema_weights_are_validated_saved_and_tested(tmp_path, train_config):
    cfg = train_config("callbacks=ema", "callbacks.ema.decay=0.9", "model=cnn4", "debug=limit")
    cfg.trainer.precision = "32-true"  # validated as the check below computes
    metrics = train(cfg)
    checkpoint = read_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert averaged.keys() == raw.keys()
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged if averaged[k].is_floating_point())
    # the accuracy best.ckpt was selected by is the one its (averaged) weights give on the val split
    model, _ = load_predictor(tmp_path / "run" / "checkpoints" / "best.ckpt")
    datamodule = FER2013DataModule(batch_size=64)
    datamodule.setup()
    accuracy = _accuracy(model, datamodule, "val", 128)  # debug=limit validates and tests 2 batches of 64
    # ... and the test report is of those weights too, not of the raw ones
    assert abs(metrics["test/acc"] - _accuracy(model, datamodule, "test", 128)) < 1e-6
    raw = EmotionClassifier(model.net_config, model.class_names)
    raw.load_state_dict(checkpoint["current_model_state"])
    assert _accuracy(raw, datamodule, "test", 128) != metrics["test/acc"]
    states = checkpoint["callbacks"]
    selected = next(
        v["best_model_score"] for k, v in states.items() if k.startswith("ModelCheckpoint{'monitor': 'val/acc'")
    )
    assert abs(accuracy - float(selected)) < 1e-6


def test_mixup_and_cutmix_train_on_mixed_soft_targets():
    model = EmotionClassifier(NET, [str(k) for k in range(7)], mixup_alpha=0.4, cutmix_alpha=1.0)
    x, y = torch.randn(16, 1, 48, 48), torch.arange(16) % 7
    kinds = set()
    for seed in range(12):
        torch.manual_seed(seed)
        loss = model._step((x, y), "train")["loss"]
        torch.manual_seed(seed)  # the same draw again, by hand
        mixed, target = model.mix(x, y)
        assert target.shape == (16, 7) and torch.allclose(target.sum(1), torch.ones(16))
        assert torch.allclose(loss, F.cross_entropy(model(mixed).float(), target), atol=1e-5)
        changed = (mixed != x).flatten(1).float().mean(1)
        kinds.add("mixup" if changed.min() == 1 else "cutmix")  # MixUp changes every pixel, CutMix a box
        lam = target[torch.arange(16), y].min()
        assert 0 < lam < 1
    assert kinds == {"mixup", "cutmix"}


def test_mixed_batches_train_end_to_end(tmp_path, train_config):
    metrics = train(train_config("model=cnn4", "model.mixup_alpha=0.2", "model.cutmix_alpha=1.0", "debug=limit"))
    assert 0 <= metrics["test/acc"] <= 1


def test_cosine_anneals_over_the_runs_own_epochs(tmp_path, train_config):
    overrides = ("model=cnn4", "debug=limit", "test=false", "trainer.max_epochs=3", "callbacks.early_stopping=null")
    train(train_config(*overrides))
    lrs = _scalars(tmp_path / "run", "lr-AdamW")
    assert np.allclose(lrs, [1e-3 * (1 + np.cos(np.pi * k / 3)) / 2 for k in range(3)], rtol=0, atol=1e-9), lrs
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["lr_schedulers"][0]["T_max"] == 3


@pytest.mark.parametrize("classifier", ["sgd_onecycle", "sgd_plateau"])
def test_every_classifier_takes_the_defaults_keys(train_config, classifier):
    teacher = "model.teacher=[fer/weights/fer2013_deep_cnn.ckpt]"  # the SGD files take it from classifier/default
    default, other = train_config(teacher).model, train_config(f"classifier={classifier}", teacher).model
    assert set(other) == set(default) and other.teacher == default.teacher
    assert other.optimizer._target_ == "torch.optim.SGD" and other.scheduler._target_ != default.scheduler._target_


def test_sgd_one_cycle_runs_over_the_runs_own_steps(tmp_path, train_config):
    train(train_config("classifier=sgd_onecycle", "model=cnn4", "debug=limit", "test=false"))
    assert abs(_scalars(tmp_path / "run", "lr-SGD")[0] - 0.1 / 25) < 1e-9  # OneCycleLR starts at max_lr / 25
    # ... and its cycle spans the run's 2 epochs of 5 steps, stepped every batch
    schedule = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["lr_schedulers"][0]
    assert schedule["total_steps"] == 10 and schedule["last_epoch"] == 10


def test_sgd_plateau_watches_validation_accuracy(tmp_path, train_config):
    overrides = ("classifier=sgd_plateau", "model.scheduler.patience=0", "model=cnn4", "debug=limit", "test=false")
    train(train_config(*overrides, "trainer.max_epochs=4", "callbacks.early_stopping=null"))
    lrs = _scalars(tmp_path / "run", "lr-SGD")
    val = _scalars(tmp_path / "run", "val/acc")
    assert len(lrs) == len(val) == 4
    # patience 0: the rate is multiplied by 0.75 after every epoch whose accuracy is not a new best
    best, expected = -1.0, 0.01
    for k in range(3):
        if val[k] <= best:
            expected *= 0.75
        best = max(best, val[k])
        assert abs(lrs[k + 1] - expected) < 1e-9, (val, lrs)


def test_ten_crop_averages_the_ten_views_torchvision_cuts():
    from torchvision.transforms.v2 import functional as TF

    torch.manual_seed(0)
    net = {**NET, "input_size": 40}
    model = EmotionClassifier(net, [str(k) for k in range(7)], tta_flip=True, crop=40, ten_crop=True).eval()
    x = torch.randn(5, 1, 48, 48)
    with torch.inference_mode():
        views = TF.ten_crop(x, [40, 40])  # 4 corners and the centre, then the same of the mirror
        expected = torch.stack([model(v).softmax(-1) for v in views]).mean(0)
        assert torch.allclose(model.predict_proba(x), expected, atol=1e-5)
        centre = EmotionClassifier(net, [str(k) for k in range(7)], crop=40).eval()
        centre.load_state_dict(model.state_dict())
        assert torch.allclose(centre.predict_proba(x), model(TF.center_crop(x, [40, 40])).softmax(-1), atol=1e-6)
        # ten_crop="test": validation (selection) sees the mirrored centre crop, test and predict all ten views
        test_only = EmotionClassifier(net, [str(k) for k in range(7)], tta_flip=True, crop=40, ten_crop="test").eval()
        test_only.load_state_dict(model.state_dict())
        assert torch.allclose(test_only.predict_proba(x), expected, atol=1e-5)
        centre_views = [TF.center_crop(x, [40, 40]), TF.center_crop(x, [40, 40]).flip(-1)]
        expected_val = torch.stack([model(v).softmax(-1) for v in centre_views]).mean(0)
        assert torch.allclose(test_only.predictor.view_logits(x, "val").softmax(-1), expected_val, atol=1e-5)
        assert (expected_val - expected).abs().max() > 1e-4  # well above the tolerance: the views differ
    with pytest.raises(ValueError, match="ten_crop"):
        EmotionClassifier(net, ["a", "b"], crop=40, ten_crop="val")
    crops = model._random_crops(x)
    assert crops.shape == (5, 1, 40, 40)
    # every crop is a window of its own image
    for image, crop in zip(x, crops):
        windows = image.unfold(1, 40, 1).unfold(2, 40, 1)  # (1, 9, 9, 40, 40)
        assert (windows == crop[:, None, None]).flatten(3).all(-1).any()


@pytest.fixture(scope="module")
def shipped_and_faces():
    """The shipped ResNet-18 and 32 real FER-2013 PrivateTest faces of the package's sample, normalised."""
    dm = FER2013DataModule()
    dm.setup()
    return load_predictor(shipped_model())[0], dm.on_after_batch_transfer(dm.splits["test"][:32], 0)[0]


def with_views(shipped: ExpressionPredictor, **views) -> ExpressionPredictor:
    """The shipped network with the mirror and ``views``, uncalibrated (each view's plain softmax)."""
    model = ExpressionPredictor(shipped.net_config, shipped.class_names, tta_flip=True, **views).eval()
    model.load_state_dict(shipped.state_dict())
    return model


def test_tta_shift_averages_the_face_moved_two_pixels_each_way_and_mirrored_in_test_only(shipped_and_faces):
    shipped, x = shipped_and_faces
    model = with_views(shipped, tta_shift=2)

    def edge(image: torch.Tensor, dim: int, first: bool) -> torch.Tensor:
        return image.narrow(dim, 0 if first else image.shape[dim] - 1, 1).repeat_interleave(2, dim)

    moved = [  # content moved down, up, right, left by 2 pixels, the edge row or column repeated
        torch.cat([edge(x, 2, True), x[..., :-2, :]], 2),
        torch.cat([x[..., 2:, :], edge(x, 2, False)], 2),
        torch.cat([edge(x, 3, True), x[..., :-2]], 3),
        torch.cat([x[..., 2:], edge(x, 3, False)], 3),
    ]
    views = [x, *moved]
    views += [v.flip(-1) for v in views]
    with torch.inference_mode():
        expected = torch.stack([model(v).softmax(-1) for v in views]).mean(0)
        assert torch.allclose(model.predict_proba(x), expected, atol=1e-5)
        mirror = with_views(shipped).predict_proba(x)
        assert (mirror - expected).abs().max() > 1e-3  # the mirror alone differs
        # validation (model selection) sees the image and its mirror only, at a fifth of the cost
        assert torch.allclose(model.view_logits(x, "val").softmax(-1), mirror, atol=1e-5)
    with pytest.raises(ValueError, match="tta_shift"):
        EmotionClassifier(NET, ["a", "b"], tta_shift=-1)


def test_tta_rotate_averages_the_face_turned_each_way_and_mirrored_in_test_only(shipped_and_faces):
    import cv2

    shipped, x = shipped_and_faces
    model = with_views(shipped, tta_rotate=10)

    def turned(degrees: float) -> torch.Tensor:  # OpenCV's rotation about the pixel grid's centre, edges repeated
        matrix = cv2.getRotationMatrix2D((23.5, 23.5), degrees, 1.0)
        faces = [cv2.warpAffine(face[0].numpy(), matrix, (48, 48), borderMode=cv2.BORDER_REPLICATE) for face in x]
        return torch.from_numpy(np.stack(faces))[:, None]

    views = [x, turned(10), turned(-10)]
    views += [v.flip(-1) for v in views]
    with torch.inference_mode():
        expected = torch.stack([model(v).softmax(-1) for v in views]).mean(0)
        # OpenCV interpolates with 1/32-pixel weights: within a few thousandths of torch's grid_sample
        assert (model.predict_proba(x) - expected).abs().max() < 5e-3
        mirror = with_views(shipped).predict_proba(x)
        assert (mirror - expected).abs().max() > 2e-2  # the turned faces change the answer
        assert torch.allclose(model.view_logits(x, "val").softmax(-1), mirror, atol=1e-5)  # not in validation
    for degrees in (-1, 90):
        with pytest.raises(ValueError, match="tta_rotate"):
            EmotionClassifier(NET, ["a", "b"], tta_rotate=degrees)


def test_crop_training_end_to_end_and_the_recognizer_feeds_whole_faces(tmp_path, train_config):
    import cv2

    from fer.inference.recognizer import EmotionRecognizer
    from tests.conftest import DATA, need

    overrides = ("model=deep_cnn", "model.crop=40", "model.ten_crop=true", "model.tta_flip=true", "debug=limit")
    metrics = train(train_config(*overrides))
    assert 0 <= metrics["test/acc"] <= 1
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    model, settings = load_predictor(best)
    assert settings["image_size"] == 48 and model.net_config["input_size"] == 40
    recognizer = EmotionRecognizer(best, detector="blazeface", device="cpu")
    faces = recognizer.predict(cv2.imread(str(need(DATA / "photos" / "two_people.jpg"))), track=False)
    assert len(faces) == 2


def test_fine_tuning_warns_when_the_pretrained_network_saw_other_crops(tmp_path, train_config, caplog):
    from fer.training.run import build_model
    from tests.helpers import save_classifier

    # a ResNet's global pooling takes any size: without the warning nothing would tell
    net = {"_target_": "fer.models.resnet18", "num_classes": 7, "input_size": 40}
    source = save_classifier(tmp_path / "crop40.ckpt", net, 7, [str(k) for k in range(7)], crop=40)
    datamodule = FER2013DataModule()
    with caplog.at_level("WARNING", logger="fer.training.run"):
        build_model(train_config("model=resnet18", f"model.net.pretrained={source}", "model.crop=40"), datamodule)
        assert "was trained on" not in caplog.text
        build_model(train_config("model=resnet18", f"model.net.pretrained={source}"), datamodule)
    assert "crop40.ckpt was trained on 40x40 crops (model.crop=40), this run uses whole images" in caplog.text


def test_distillation_loss_pulls_the_network_to_the_teacher_and_keeps_it_out_of_checkpoints():
    from fer.shipped import shipped_model

    teacher, _ = load_predictor(shipped_model("fer2013_deep_cnn"))
    frozen = {k: v.clone() for k, v in teacher.net.state_dict().items()}
    datamodule = FER2013DataModule(batch_size=64)
    datamodule.setup()
    images, labels = datamodule.splits["train"][:64]
    x, y = datamodule.on_after_batch_transfer((images, labels), 0)
    torch.manual_seed(0)
    model = EmotionClassifier(NET, list(datamodule.class_names), teacher=teacher.net, distill_weight=0.75).eval()
    with torch.no_grad():  # eval mode: no dropout, the same outputs twice
        student, taught = model(x).float(), teacher.net(x).float()
    # the loss by hand: (1 - w) CE + w T^2 KL(teacher || student) at T = 2
    kl = (taught / 2).softmax(-1) * ((taught / 2).log_softmax(-1) - (student / 2).log_softmax(-1))
    expected = 0.25 * F.cross_entropy(student, y) + 0.75 * 4 * kl.sum(-1).mean()
    assert torch.allclose(model._step((x, y), "train")["loss"].detach(), expected, atol=1e-5)
    assert not any(k.startswith("_teacher") for k in model.state_dict())
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in model.net.parameters())

    # 40 steps on the teacher alone (w = 1) bring the network far closer to it than 40 on the labels (w = 0)
    def divergence_after_training(weight: float) -> float:
        torch.manual_seed(0)
        model = EmotionClassifier(NET, list(datamodule.class_names), teacher=teacher.net, distill_weight=weight)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(40):
            optimizer.zero_grad()
            model._step((x, y), "train")["loss"].backward()
            optimizer.step()
        with torch.no_grad():
            return model.eval()._distillation(x, model(x)).item()

    taught_only, labels_only = divergence_after_training(1.0), divergence_after_training(0.0)
    assert taught_only < 0.1 * labels_only, (taught_only, labels_only)
    assert all(torch.equal(v, frozen[k]) for k, v in teacher.net.state_dict().items())
    with pytest.raises(ValueError, match="distill_weight"):
        EmotionClassifier(NET, ["a", "b"], distill_weight=1.5)


def test_distillation_end_to_end_and_a_teacher_of_other_inputs_is_refused(tmp_path, train_config):
    from fer.checkpoint import CheckpointError
    from fer.shipped import shipped_model

    teachers = f"model.teacher=[{shipped_model('fer2013_deep_cnn')},{shipped_model('fer2013')}]"
    metrics = train(train_config("model=cnn4", teachers, "debug=limit"))
    assert 0 <= metrics["test/acc"] <= 1
    checkpoint = read_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")
    assert "teacher" not in checkpoint["hyper_parameters"]  # neither the teacher nor its paths
    assert all(k.startswith("net.") for k in checkpoint["state_dict"])
    load_predictor(tmp_path / "run" / "checkpoints" / "best.ckpt")
    # the shipped models saw whole 48x48 faces, not the 40x40 crops this network would train on
    with pytest.raises(CheckpointError, match=r"fer2013_deep_cnn.ckpt: trained on whole images .* 40x40 crops"):
        train(train_config("model=cnn4", teachers, "model.crop=40", "debug=limit"))


def test_only_the_fast_recipe_narrows_the_resnet(train_config):
    from fer.training.run import build_model

    datamodule = FER2013DataModule()
    shipped = str(shipped_model())
    # the 60-epoch recipes build the shipped model's network: its weights fine-tune and teach there
    model = build_model(
        train_config("experiment=fer2013_distill", f"model.net.pretrained={shipped}", f"model.teacher=[{shipped}]"),
        datamodule,
    )
    assert model.net.fc[-1].in_features == 512
    assert torch.equal(model.net.conv1.weight, load_predictor(shipped)[0].net.conv1.weight)
    resnet18 = build_model(train_config("experiment=fer2013_resnet18"), datamodule)
    assert resnet18.net.fc[-1].in_features == 512
    fast = build_model(train_config("experiment=fer2013_fast"), datamodule)
    assert fast.net.fc[-1].in_features == 256
    # the fast recipe's test-time views are its own: the 60-epoch recipes' README figures are mirror-only
    assert [fast.hparams[k] for k in VIEWS] == [True, 1, 10, False]
    assert [m.hparams[k] for m in (model, resnet18) for k in VIEWS] == [True, 0, 0, False] * 2
    with pytest.raises(
        CheckpointError, match=r"conv1.weight has shape \(64, 1, 3, 3\), the network wants \(32, 1, 3, 3\)"
    ):
        build_model(train_config("experiment=fer2013_fast", f"model.net.pretrained={shipped}"), datamodule)
