"""BAUM-2 clips, frame extraction from real videos, CNN-LSTM, C3D and the frame average."""

from collections import Counter

import pytest
import torch

from fer.data.baum2 import (
    BAUM2DataModule,
    BAUM2FramesDataModule,
    extract_face_frames,
    fixed_length,
    load_clip,
    read_baum2,
)
from fer.face.detection import HaarDetector
from fer.inference.loop import run
from fer.inference.recognizer import EmotionRecognizer
from fer.models import C3D, CNNLSTM, FrameAverage
from tests.conftest import DATA, need, run_train

BAUM2 = DATA / "baum2" / "Extracted"


def test_real_clips_and_labels():
    clips = read_baum2(need(BAUM2))
    assert len(clips) == 147 and len({c.subject for c in clips}) == 50
    assert sum(len(c.frames) for c in clips) == 2272
    assert Counter(c.code for c in clips) == {5: 32, 1: 27, 0: 26, 6: 21, 7: 13, 2: 10, 3: 10, 4: 8}
    clip = load_clip(clips[0].frames, 12)
    assert clip.shape == (12, 1, 48, 48) and clip.dtype == torch.uint8


def test_clips_shorter_than_t_are_padded():
    short = min(read_baum2(need(BAUM2)), key=lambda c: len(c.frames))
    n = len(short.frames)
    assert n < 16
    clip = load_clip(short.frames, 16)
    assert clip.shape[0] == 16 and torch.equal(clip[n - 1], clip[-1])  # padded with the last frame
    assert fixed_length(5, 8).tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    assert fixed_length(16, 12).tolist()[0] == 0 and fixed_length(16, 12).tolist()[-1] == 15


def test_splits_are_subject_independent_and_augment_clips_as_a_whole():
    dm = BAUM2DataModule(str(need(BAUM2)), clip_length=8, fold=1, batch_size=4, augment={"erase": 0.0})
    dm.setup()
    train, val, test = (set(dm.subjects[s]) for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test) and len(train | val | test) == 50
    assert sum(len(d) for d in dm.splits.values()) == 147
    clips, labels = next(iter(dm.train_dataloader()))
    # a clip of one frame repeated stays one frame repeated after augmentation: same warp for all
    still = clips[:, :1].expand(-1, 8, -1, -1, -1).contiguous()

    class Training:
        training = True

    dm.trainer = Training()
    torch.manual_seed(0)
    x, _ = dm.on_after_batch_transfer((still, labels), 0)
    assert x.shape == (4, 8, 1, 48, 48)
    assert torch.allclose(x[:, 0], x[:, 5]) and not torch.allclose(
        x[:, 0], dm.on_after_batch_transfer((still, labels), 0)[0][:, 0]
    )


def test_frames_of_the_clips_as_images_keep_the_clips_subject_folds():
    clips = BAUM2DataModule(str(need(BAUM2)), fold=1)
    frames = BAUM2FramesDataModule(str(BAUM2), fold=1)
    clips.setup()
    frames.setup()
    assert frames.subjects == clips.subjects and frames.input_spec == {"in_channels": 1, "input_size": 48}
    assert sum(len(ds) for ds in frames.splits.values()) == 2272
    split = next(name for name, members in frames.subjects.items() if "S001" in members)
    images, labels = frames.splits[split].tensors
    mine = [c for c in read_baum2(BAUM2) if c.subject in frames.subjects[split]]
    assert Counter(labels.tolist()) == Counter(c.code for c in mine for _ in c.frames)
    first = load_clip(mine[0].frames[:1], 1)[0]
    assert images.shape[1:] == (1, 48, 48) and any(torch.equal(first, x) for x in images)
    x, _ = frames.on_after_batch_transfer((images[:4], labels[:4]), 0)
    assert x.shape == (4, 1, 48, 48) and x.dtype == torch.float32


@pytest.mark.parametrize(
    "net",
    [
        C3D(num_classes=8, clip_length=16),
        CNNLSTM({"_target_": "fer.models.shallow_cnn"}, 8, clip_length=12),
        FrameAverage({"_target_": "fer.models.shallow_cnn"}, 8, clip_length=12),
    ],
)
@pytest.mark.parametrize("length", [12, 16])
def test_clip_models_shapes_and_backward(net, length):
    x = torch.randn(2, length, 1, 48, 48)
    logits = net(x)
    assert logits.shape == (2, 8)
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_cnn_lstm_from_an_image_checkpoint():
    from fer.checkpoint import pretrained_network
    from fer.shipped import shipped_model

    config, weights, *_ = pretrained_network(shipped_model("fer2013_deep_cnn"))
    net = CNNLSTM(config, num_classes=8, clip_length=4, drop_frame_classifier=True, freeze=True)
    missing, unexpected = net.frame_net.load_state_dict(weights, strict=False)
    assert not missing and unexpected == ["classifier.3.weight", "classifier.3.bias"]  # the class layer
    assert all(not p.requires_grad for p in net.frame_net.parameters())
    assert net.lstm.input_size == 512  # the deep CNN's last hidden width
    assert net(torch.randn(1, 4, 1, 48, 48)).shape == (1, 8)


@pytest.fixture(scope="module")
def baum2_fold0():
    dm = BAUM2DataModule(str(need(BAUM2)), fold=0, batch_size=6)
    dm.setup()
    return dm


def test_frame_average_starts_as_the_shipped_model_on_real_clips(baum2_fold0, train_config):
    from fer.checkpoint import load_predictor
    from fer.shipped import shipped_model
    from fer.training.run import build_model

    dm = baum2_fold0
    x, _ = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    model = build_model(train_config("experiment=baum2_kfold", "model=frame_average"), dm)
    image_model, _ = load_predictor(shipped_model("fer2013"))
    with torch.no_grad():
        clip_logits = model.net.eval()(x)
        frame_logits = image_model.net.eval()(x.flatten(0, 1)).view(6, 16, -1)
    # each FER-2013 class's logit is the mean of its logits over the clip's frames; contempt starts fresh
    rows = [dm.class_names.index(name) for name in image_model.class_names]
    assert "contempt" not in image_model.class_names and len(rows) == 7
    torch.testing.assert_close(clip_logits[:, rows], frame_logits.mean(1), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("model", "freeze", "learns"),
    [
        ("cnn_lstm", True, {"lstm", "classifier.1"}),
        ("frame_average", True, {"frame_net.fc.1"}),  # the class layer (fc.0: the dropout before it)
        ("frame_average", False, {"frame_net.fc.1", "frame_net.conv1", "frame_net.bn1", "frame_net.layer4.1.bn2"}),
    ],
)
def test_a_frozen_frame_network_stays_as_it_was_through_lightnings_fit(
    model, freeze, learns, baum2_fold0, train_config, tmp_path
):
    import pytorch_lightning as pl

    from fer.training.run import build_model

    overrides = ["experiment=baum2_kfold", f"model={model}", f"model.net.freeze={freeze}"]
    module = build_model(
        train_config(*overrides, "model.net.pretrained=fer/weights/fer2013_resnet18.ckpt"), baum2_fold0
    )
    before = {k: v.clone() for k, v in module.net.state_dict().items()}
    trainer = pl.Trainer(
        max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, datamodule=baum2_fold0)
    changed = {k.rsplit(".", 1)[0] for k, v in module.net.state_dict().items() if not torch.equal(v, before[k])}
    # frozen: batch-norm statistics too; Lightning never calls train() before fitting, so the model must be frozen new
    assert changed == learns if freeze else changed >= learns


def test_frame_extraction_from_real_videos(tmp_path):
    frames = extract_face_frames(need(DATA / "videos" / "single_face.mp4"), HaarDetector(), 16, cache_dir=tmp_path)
    assert frames.shape == (16, 1, 48, 48) and frames.dtype == torch.uint8
    assert torch.equal(extract_face_frames(DATA / "videos" / "single_face.mp4", None, 16, cache_dir=tmp_path), frames)
    empty = extract_face_frames(need(DATA / "videos" / "no_face.mp4"), HaarDetector(), 8)
    assert empty.shape == (0, 1, 48, 48)
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        extract_face_frames(tmp_path / "missing.mp4", HaarDetector())


@pytest.mark.parametrize("model", ["c3d", "cnn_lstm", "frame_average"])
def test_train_py_on_baum2_and_clip_inference(model, tmp_path):
    need(BAUM2)
    run_train(tmp_path, "data=baum2", f"model={model}", "data.clip_length=12", "debug=limit", "trainer.max_epochs=1")
    assert (tmp_path / "metrics.json").exists()
    # infer.py's recognizer with the clip model: every tracked face over its last 12 crops
    recognizer = EmotionRecognizer(tmp_path / "checkpoints" / "last.ckpt", detector="haar", device="cpu")
    assert recognizer.clip_length == 12 and len(recognizer.class_names) == 8
    summary = run(recognizer, need(DATA / "videos" / "single_face.mp4"), tmp_path / "infer", display=False)
    assert summary["frames_with_face"] >= 0.9 * summary["frames"]
    (track,) = recognizer.tracker.tracks.values()
    assert len(track.window) == 12 and track.window[0].shape == (1, 48, 48)
