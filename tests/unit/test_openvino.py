"""OpenVINO without running it: which user files its exporter takes, its recipe, and the adapter's options and
compile configuration against a stand-in openvino module."""

import datetime
import re
import sys
import types
from collections import namedtuple

import pytest

from edgeorch.arch import Arch
from edgeorch.bench.adapters import OptionError
from edgeorch.bench.adapters.openvino import OpenVINO, node_events
from edgeorch.errors import ModelError
from edgeorch.models import EXPORTERS, model_name, resolve
from edgeorch.recipes import load_recipes

OPENVINO = EXPORTERS["openvino"]
IR = '<?xml version="1.0"?>\n<net name="tiny" version="11">\n\t<layers/>\n\t<edges/>\n</net>\n'


def test_an_ir_xml_is_taken_with_its_bin_beside_it_and_both_are_pushed(tmp_path):
    xml = tmp_path / "net.xml"
    xml.write_text(IR)
    with pytest.raises(ModelError, match=r"net\.xml needs net\.bin beside it") as caught:
        OPENVINO.validate(xml)
    assert "copy net.bin next to net.xml" in caught.value.hint
    (tmp_path / "net.bin").write_bytes(b"\0" * 16)
    assert model_name(str(xml), "openvino") == "net"
    spec = resolve(str(xml), "openvino", cache_dir=tmp_path / "cache")
    assert [p.name for p, _ in spec.companions] == ["net.bin"]  # deployed beside the .xml, under the same name
    assert OPENVINO.companions(tmp_path / "net.onnx") == ()


@pytest.mark.parametrize("text, why", [("<html><body/></html>", "its root element is <html>, not <net>"),
                                       ("<net", "it is not readable XML"),
                                       ("", "it is not readable XML")])
def test_an_xml_that_is_not_openvino_ir_is_refused_naming_the_file(tmp_path, text, why):
    xml = tmp_path / "page.xml"
    xml.write_text(text)
    (tmp_path / "page.bin").write_bytes(b"\0")
    with pytest.raises(ModelError, match=re.escape(f"{xml} is not an OpenVINO IR model: {why}")) as caught:
        OPENVINO.validate(xml)
    assert "an .onnx file, or an OpenVINO IR .xml with its .bin beside it" in caught.value.hint


def test_a_file_of_another_format_is_refused_naming_the_formats_taken(tmp_path):
    model = tmp_path / "net.tflite"
    model.write_bytes(b"\0" * 8)
    with pytest.raises(ModelError, match=r"its name ends in \.tflite, not \.onnx or \.xml"):
        model_name(str(model), "openvino")
    with pytest.raises(ModelError, match="does not exist"):
        OPENVINO.validate(tmp_path / "missing.xml")


def test_a_broken_onnx_file_is_refused(tmp_path):
    pytest.importorskip("onnx")
    model = tmp_path / "net.onnx"
    model.write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="is not a valid ONNX model"):
        OPENVINO.validate(model)


def test_the_zoo_is_the_onnx_exporters_file_under_its_key(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    path = OPENVINO.path("squeezenet1_1", 1, tmp_path)
    assert path.suffix == ".onnx" and path.name.startswith("squeezenet1_1-")
    assert path == EXPORTERS["onnx"].path("squeezenet1_1", 1, tmp_path)  # one export for every ONNX framework


def test_the_recipe_serves_arm64_and_amd64_and_says_why_not_armv7():
    recipe = load_recipes()["openvino"]
    assert recipe.model_format == "openvino" and set(recipe.arches) == {Arch.ARM64, Arch.AMD64}
    assert "armv7l" in recipe.why_not(Arch.ARMV7)
    for arch in (Arch.ARM64, Arch.AMD64):
        assert recipe.packages_for(recipe.build_for(arch, ("3.10", "3.13"), "trixie"), arch) == ("openvino==2026.4.1",)
        assert "cp39" in recipe.why_not(arch, "3.9", "bullseye")


class FakeCore:
    """The few calls the adapter makes before loading a model, on a CPU with the given capabilities."""

    capabilities = ["FP32", "INT8"]

    def get_property(self, device, key):
        properties = {"OPTIMIZATION_CAPABILITIES": self.capabilities, "DEVICE_ARCHITECTURE": "arm64",
                      "FULL_DEVICE_NAME": "Cortex-A72"}
        if key not in properties:
            raise RuntimeError(f"unsupported property {key}")
        return properties[key]


@pytest.fixture
def fake_openvino(monkeypatch):
    module = types.ModuleType("openvino")
    module.Core, module.__version__ = FakeCore, "2026.4.1-fake"
    module.get_version = lambda: "2026.4.1-fake-build"
    monkeypatch.setitem(sys.modules, "openvino", module)
    return module


def test_float32_is_pinned_and_threads_given_only_when_asked(fake_openvino):
    adapter = OpenVINO()
    assert adapter.config(4) == {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                                 "PERF_COUNT": False, "INFERENCE_NUM_THREADS": 4}
    assert "INFERENCE_NUM_THREADS" not in adapter.config(0)  # 0: OpenVINO's own choice
    assert adapter.config(2, profiling=True)["PERF_COUNT"] is True
    options = adapter.info(4)["options"]
    assert (options["precision"], options["backend"], options["architecture"]) == ("fp32", "ACL+oneDNN", "arm64")


def test_fp16_is_refused_on_a_cpu_without_half_precision_arithmetic(fake_openvino, monkeypatch):
    with pytest.raises(OptionError, match="precision=fp16: this CPU has no half-precision arithmetic"):
        OpenVINO({"precision": "fp16"})
    monkeypatch.setattr(FakeCore, "capabilities", ["FP32", "FP16", "INT8"])
    assert OpenVINO({"precision": "fp16"}).config(0)["INFERENCE_PRECISION_HINT"] == "f16"
    with pytest.raises(OptionError, match=r"knows \['precision'\]"):
        OpenVINO({"device": "GPU"})
    with pytest.raises(OptionError, match=r"precision='int8' is not one of \['fp32', 'fp16'\]"):
        OpenVINO({"precision": "int8"})


def test_the_profile_keeps_the_nodes_that_ran_in_nanoseconds():
    Info = namedtuple("Info", "node_type node_name real_time status")
    ran, fused = object(), object()
    infos = [Info("Convolution", "conv1", datetime.timedelta(microseconds=1500), ran),
             Info("Relu", "relu1", datetime.timedelta(0), fused),
             Info("Reorder", "out_reorder", datetime.timedelta(microseconds=3), ran)]
    assert node_events(infos, ran) == [("Convolution", "conv1", 1_500_000.0), ("Reorder", "out_reorder", 3000.0)]
