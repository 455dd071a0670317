import pytest
import torch
import torch.nn.functional as F

from fer.data.transforms import BatchAugment
from fer.face.crops import preprocess
from fer.models import CNN4, DeXpression, VGGNet, deep_cnn, mobilenet_v3, resnet18, shallow_cnn
from fer.training.module import EmotionClassifier

MODELS = {
    "cnn4": CNN4,
    "shallow_cnn": shallow_cnn,
    "deep_cnn": deep_cnn,
    "dexpression": DeXpression,
    "resnet18": resnet18,
    "mobilenet_v3": mobilenet_v3,
    "vggnet": VGGNet,
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(("channels", "size", "classes"), [(1, 48, 7), (3, 64, 8)])
def test_output_shape_and_backward(name, channels, size, classes):
    torch.manual_seed(0)
    net = MODELS[name](num_classes=classes, in_channels=channels, input_size=size)
    x = torch.randn(4, channels, size, size)
    logits = net(x)
    assert logits.shape == (4, classes) and logits.dtype == torch.float32
    F.cross_entropy(logits, torch.arange(4) % classes).backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", ["cnn4", "shallow_cnn", "deep_cnn", "resnet18", "mobilenet_v3", "vggnet"])
def test_too_small_input_is_refused(name):
    with pytest.raises(ValueError, match="too small"):
        MODELS[name](input_size=3)


@pytest.mark.parametrize(("size", "side"), [(48, 3), (224, 14)])
def test_dexpression_feature_map_sizes(size, side):
    net = DeXpression(num_classes=7, input_size=size)
    features = net.featex2(net.featex1(net.stem(torch.randn(2, 1, size, size))))
    assert features.shape == (2, 272, side, side)  # 14x14x272 at 224, as in the paper
    assert net(torch.randn(2, 1, size, size)).shape == (2, 7)


def test_classifier_flip_tta_is_mirror_invariant():
    torch.manual_seed(0)
    model = EmotionClassifier(deep_cnn(), class_names=list("abcdefg"), tta_flip=True).eval()
    x = torch.randn(3, 1, 48, 48)
    with torch.inference_mode():
        p, p_mirror = model.predict_proba(x), model.predict_proba(x.flip(-1))
    assert torch.allclose(p.sum(-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(p, p_mirror, atol=1e-5)


def test_classifier_rebuilds_its_net_from_config(tmp_path):
    net_config = {"_target_": "fer.models.shallow_cnn", "num_classes": 3}
    model = EmotionClassifier(net_config, class_names=["a", "b", "c"])
    assert model.hparams.net == net_config
    x = torch.randn(2, 1, 48, 48)
    assert model.eval()(x).shape == (2, 3)


def test_preprocess_normalises_and_resizes():
    images = torch.full((2, 1, 48, 48), 255, dtype=torch.uint8)
    x = preprocess(images, image_size=96, mean=0.5, std=0.25)
    assert x.shape == (2, 1, 96, 96) and torch.allclose(x, torch.full_like(x, 2.0))
    assert preprocess(images[:, 0]).shape == (2, 1, 48, 48)  # (B, H, W) taken as grey


def test_batch_augment_mirror_and_random_draws():
    torch.manual_seed(0)
    x = torch.rand(5, 1, 48, 48)
    mirror = BatchAugment(flip=1.0, rotation=0, scale=(1, 1), shift=0, erase=0)
    assert torch.allclose(mirror(x), x.flip(-1), atol=1e-5)
    identity = BatchAugment(flip=0.0, rotation=0, scale=(1, 1), shift=0, erase=0)
    assert torch.allclose(identity(x), x, atol=1e-5)
    out = BatchAugment(erase=1.0)(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    changed = (out - x).abs().flatten(1).amax(1) > 1e-3
    assert changed.all()  # every image was warped and erased differently
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize(("stride", "width", "side"), [(2, 64, 3), (1, 64, 6), (2, 32, 3)])
def test_resnet18_keeps_the_resolution_and_width_it_says(stride, width, side):
    net = resnet18(stem_stride=stride, width=width).eval()
    x = torch.randn(2, 1, 48, 48)
    stem = net.relu(net.bn1(net.conv1(x)))
    stages = [net.layer1(net.maxpool(stem))]
    for layer in (net.layer2, net.layer3, net.layer4):
        stages.append(layer(stages[-1]))
    assert stem.shape[1:] == (width, 48 // stride, 48 // stride)
    assert [s.shape[1] for s in stages] == [width, 2 * width, 4 * width, 8 * width]
    assert stages[-1].shape[-1] == side and net(x).shape == (2, 7)


@pytest.mark.parametrize(("size", "stride", "side"), [("small", 1, 3), ("large", 1, 3), ("small", 2, 2)])
def test_mobilenet_v3_ends_at_the_resolution_it_says(size, stride, side):
    net = mobilenet_v3(size=size, stem_stride=stride, input_size=64 if stride == 2 else 48).eval()
    x = torch.randn(2, 1, 64 if stride == 2 else 48, 64 if stride == 2 else 48)
    assert net.features(x).shape[-2:] == (side, side) and net(x).shape == (2, 7)
    with pytest.raises(ValueError, match="size"):
        mobilenet_v3(size="tiny")


def test_narrow_resnet18_has_torchvisions_layout_and_initialisation():
    torch.manual_seed(0)
    full, narrow = resnet18(), resnet18(width=32)
    full_shapes = {k: v.shape for k, v in full.state_dict().items()}
    narrow_shapes = {k: v.shape for k, v in narrow.state_dict().items()}
    assert narrow_shapes.keys() == full_shapes.keys()  # same names: checkpoints and fine-tuning code apply
    assert narrow_shapes["fc.weight"] == (7, 256) and narrow_shapes["layer2.0.downsample.0.weight"] == (64, 32, 1, 1)
    assert sum(p.numel() for p in narrow.parameters()) < 0.26 * sum(p.numel() for p in full.parameters())
    for name in ("layer1.0.conv1", "layer3.1.conv2", "layer4.0.downsample.0"):  # He init, fan-out, as torchvision
        conv = narrow.get_submodule(name)
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.15)
    assert (narrow.layer3[0].bn1.weight == 1).all() and (narrow.layer3[0].bn1.bias == 0).all()
    with pytest.raises(ValueError, match="width"):
        resnet18(width=0)


def test_vggnet_is_the_papers_network_at_40x40():
    net = VGGNet()  # Khaireddin & Chen 2021: 2x2x512 features into two FC 4096 layers
    assert net.classifier[1].in_features == 512 * 2 * 2 and net.classifier[-1].out_features == 7
    convs = [m for m in net.features.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert all(c.kernel_size == (3, 3) for c in convs)


def _real_faces() -> torch.Tensor:
    """64 FER-2013 faces of the sample shipped in the package, ``float (64, 1, 48, 48)`` in [0, 1]."""
    from fer.data.fer2013_files import load_fer2013

    faces, _ = load_fer2013(None).split("Training")
    return faces[:64].unsqueeze(1).float() / 255


def test_photometric_augmentation_changes_what_each_key_says():
    torch.manual_seed(0)
    x = _real_faces()
    still = {"flip": 0.0, "rotation": 0, "scale": (1, 1), "shift": 0, "erase": 0}
    contrast = BatchAugment(**still, contrast=0.3)(x)
    ratio = contrast.std((1, 2, 3)) / x.std((1, 2, 3))
    assert 0.65 < ratio.min() < 0.9 and 1.1 < ratio.max() < 1.35  # clamping trims the highest a little
    torch.testing.assert_close(contrast.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=0.03, rtol=0)
    gamma = BatchAugment(**still, gamma=0.3)(x)
    inside = (x > 0.05) & (x < 0.95)
    exponent = torch.stack([(gamma[k][inside[k]].log() / x[k][inside[k]].log()).median() for k in range(64)])
    assert 0.74 <= exponent.min() < 0.9 and 1.1 < exponent.max() <= 1.35
    sharpness = lambda y: (y[..., 1:, :] - y[..., :-1, :]).abs().mean((1, 2, 3))  # noqa: E731
    blurred = BatchAugment(**still, blur=1.0)(x)
    assert (sharpness(blurred) < 0.9 * sharpness(x)).all()
    half = BatchAugment(**still, blur=0.5)(x)
    untouched = (half - x).abs().flatten(1).amax(1) < 1e-4
    assert 15 < untouched.sum() < 49
    compressed = BatchAugment(**still, jpeg=1.0, jpeg_quality=(20, 20))(x)
    psnr = -10 * torch.log10(((compressed - x) ** 2).mean((1, 2, 3)))
    assert psnr.min() > 24 and psnr.max() < 42
    noisy = BatchAugment(**still, noise=0.05)(x) - x
    assert noisy.std((1, 2, 3)).max() < 0.055 and noisy.std((1, 2, 3)).min() < 0.02 < noisy.std((1, 2, 3)).max()
    torch.testing.assert_close(BatchAugment(**still)(x), x)
