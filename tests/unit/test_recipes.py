"""The framework recipes under images/ and the support matrix they define."""

import pytest

from edgeorch.arch import Arch
from edgeorch.errors import ConfigError, ModelError
from edgeorch.models import model_name
from edgeorch.recipes import DEFAULT_DOCKERFILE, get_recipe, load_recipes


def test_every_recipe_knows_each_arch_and_offers_its_current_release_first():
    recipes = load_recipes()
    assert {"tflite", "onnxruntime", "litert", "opencv", "pytorch", "tensorflow", "caffe", "tensorrt"} <= set(recipes)
    for r in recipes.values():
        for arch in Arch:
            assert (arch in r.arches) == (r.why_not(arch) is None)
    # the versions that crashed under QEMU 7.2 are the defaults now
    assert recipes["onnxruntime"].version == "1.32.0" and recipes["litert"].version == "2.3.0"


def test_onnxruntime_on_armv7_comes_from_debian_trixie():
    r = get_recipe("onnxruntime")
    assert r.why_not(Arch.ARM64) is None and r.why_not(Arch.ARMV7) is None
    assert "Debian trixie's python3-onnxruntime" in r.why_not(Arch.ARMV7, "3.11", "bookworm")
    assert r.why_not(Arch.ARMV7, "3.13", "trixie") is None
    assert r.dockerfile == DEFAULT_DOCKERFILE and r.model_format == "onnx"


def test_unknown_framework_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown framework 'caffe9'") as err:
        get_recipe("caffe9")
    assert "onnxruntime" in err.value.hint and "tflite" in err.value.hint


def test_an_onnx_model_that_is_not_one(tmp_path):
    pytest.importorskip("onnx")
    bad = tmp_path / "net.onnx"
    bad.write_text("not a protobuf\n")
    with pytest.raises(ModelError, match="is not a valid ONNX model"):
        model_name(str(bad), "onnx")


def test_an_unknown_onnx_model_name_lists_the_zoo(tmp_path):
    with pytest.raises(ModelError, match="unknown model 'resnet1000'") as err:
        model_name("resnet1000", "onnx")
    assert "squeezenet1_1" in err.value.hint and "vgg16" in err.value.hint


def test_pytorch_and_executorch_pin_the_same_torch_in_the_layer_they_share():
    """The shared layer is only shared where both recipes pin the same torch on an arch."""
    pytorch, executorch = get_recipe("pytorch"), get_recipe("executorch")
    assert pytorch.layer == executorch.layer == ("torch",)
    for arch in (Arch.AMD64, Arch.ARM64):
        pins = [{p for p in r.packages_for(r.build_for(arch, ("3.13",), "trixie"), arch) if p.startswith("torch==")}
                for r in (pytorch, executorch)]
        assert pins[0] == pins[1] and len(pins[0]) == 1, arch


def test_the_build_context_puts_the_shared_packages_in_a_layer_of_their_own(tmp_path):
    from edgeorch.images import _context_wheels
    house, ctx = tmp_path / "house", tmp_path / "ctx"
    house.mkdir(), ctx.mkdir()
    wheels = ["torch-2.13.0+cpu-cp313-cp313-manylinux_2_28_x86_64.whl", "executorch-1.5.1-cp313-cp313-any.whl",
              "typing_extensions-4.16.0-py3-none-any.whl"]
    for name in wheels:
        (house / name).write_bytes(name.encode())
    (house / "requirements.txt").write_text("executorch==1.5.1\ntorch==2.13.0\ntyping-extensions==4.16.0\n")
    _context_wheels(house, ctx, ("torch",))
    assert sorted(p.name for p in (ctx / "layer").iterdir()) == ["requirements.txt", wheels[0]]
    assert (ctx / "layer" / "requirements.txt").read_text() == "torch==2.13.0\n"
    assert sorted(p.name for p in (ctx / "wheels").iterdir()) == sorted(["requirements.txt", *wheels[1:]])
    assert (ctx / "wheels" / "requirements.txt").read_text() == "executorch==1.5.1\ntyping-extensions==4.16.0\n"
    other = tmp_path / "other"
    other.mkdir()
    _context_wheels(house, other, ())  # no layer: everything in wheels/, an empty layer/ (a venv and nothing else)
    assert [p.name for p in (other / "layer").iterdir()] == ["requirements.txt"]
    assert (other / "layer" / "requirements.txt").read_text() == "" and len(list((other / "wheels").iterdir())) == 4
