"""edgeorch.models.zoo: the networks' metadata without PyTorch; with it, their size, cost, determinism and outputs."""

import subprocess
import sys

import numpy as np
import pytest

from edgeorch.errors import ModelError
from edgeorch.models import EXPORTERS, zoo
from edgeorch.models.zoo import NETWORKS, build, count_macs, count_params, reference_input

NAMES = ["squeezenet1_1", "googlenet", "resnet18", "resnet50", "mobilenet_v2", "alexnet", "vgg16"]


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def built(torch):
    """Each network built once: {name: module}."""
    return {name: build(name) for name in NAMES}


def test_the_seven_networks_are_described_without_torch():
    assert list(NETWORKS) == NAMES
    for name, net in NETWORKS.items():
        assert net.name == name and net.input_shape == (1, 3, 224, 224) and net.description
        assert net.published_params > 1e6 and net.published_macs > 1e8


def test_importing_the_zoo_does_not_import_torch():
    code = "import sys, edgeorch.models.zoo as z; z.NETWORKS['resnet50'].published_macs; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"


@pytest.mark.parametrize("call", [build, lambda name: EXPORTERS["onnx"].export(name, 1, "/nonexistent"),
                                  reference_input])
def test_an_unknown_network_is_refused_with_the_known_names(call):
    with pytest.raises(ModelError, match="unknown network 'resnet101'") as err:
        call("resnet101")
    assert all(name in err.value.hint for name in NAMES)


def test_without_torch_building_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail as if it were not installed
    with pytest.raises(ModelError, match="PyTorch is not installed") as err:
        build("resnet18")
    assert "pip install -e '.[models]'" in err.value.hint


def test_without_onnx_exporting_says_what_to_install(torch, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ModelError, match="onnx package is not installed") as err:
        EXPORTERS["onnx"].export("resnet18", 1, tmp_path)
    assert "pip install -e '.[models]'" in err.value.hint and not any(tmp_path.iterdir())  # said before building


def test_the_reference_input_is_fixed_by_the_seed():
    x = reference_input(NETWORKS["resnet18"])
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    assert np.array_equal(x, reference_input("resnet18", seed=zoo.SEED))
    assert not np.array_equal(x, reference_input("resnet18", seed=1))
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01  # the scale of a normalized image


def test_macs_count_conv_groups_and_linear_layers_only(torch):
    nn = torch.nn
    conv = nn.Conv2d(4, 8, 3, padding=1, groups=2)
    net = nn.Sequential(conv, nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(1), nn.Flatten(), nn.Linear(200, 10))
    # conv: 8x5x5 outputs, each 2 input channels x 3x3; linear: 10 outputs, each 200 inputs
    assert count_macs(net, (1, 4, 5, 5)) == 200 * 2 * 9 + 10 * 200
    assert not conv._forward_hooks  # counting leaves no hooks behind
    assert count_params(torch.nn.BatchNorm2d(8)) == 16  # weight and bias; the running statistics are not parameters


@pytest.mark.parametrize("name", NAMES)
def test_parameters_and_macs_match_the_published_figures(built, name):
    net = NETWORKS[name]
    assert count_params(built[name]) == pytest.approx(net.published_params, rel=0.05)
    assert count_macs(built[name], net.input_shape) == pytest.approx(net.published_macs, rel=0.10)


@pytest.mark.parametrize("name", NAMES)
def test_a_build_is_bit_identical_and_leaves_the_callers_random_stream_alone(torch, built, name):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    again = build(name).state_dict()
    assert torch.equal(torch.rand(3), expected)
    first = built[name].state_dict()
    assert list(again) == list(first)
    assert all(torch.equal(again[k], first[k]) for k in first)


@pytest.mark.parametrize("name", NAMES)
def test_outputs_are_finite_and_follow_the_input(torch, built, name):
    model, net = built[name], NETWORKS[name]
    assert not model.training
    with torch.no_grad():
        outputs = [model(torch.from_numpy(reference_input(net, seed))) for seed in range(3)]
    assert outputs[0].shape == (1, 1000)
    assert all(torch.isfinite(out).all() and out.std() > 1e-3 for out in outputs)
    # a network that gave every input the same class would make a cross-framework top-1 check meaningless
    assert len({int(out.argmax()) for out in outputs}) > 1


def test_a_batch_of_reference_inputs_starts_with_the_single_one():
    batch = reference_input("resnet18", batch=3)
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[:1], reference_input("resnet18"))
    assert not np.array_equal(batch[0], batch[1])  # three different images
    with pytest.raises(ModelError, match="batch 0 is not a number of images"):
        reference_input("resnet18", batch=0)
    assert zoo.file_stem("resnet18", 1) == "resnet18" and zoo.file_stem("resnet18", 4) == "resnet18_b4"
