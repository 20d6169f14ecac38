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
