"""ncnn without converting anything: the .param reader both sides use, the Input shape the exporter writes, the
refusals of a user's files and of shapes ncnn cannot take, and the recipe."""

import sys

import pytest

from edgeorch.arch import Arch
from edgeorch.bench.adapters import OptionError, get
from edgeorch.bench.adapters.ncnn import BINARY_MAGIC, check_shape, companion, param_inputs, parse_param
from edgeorch.bench.signature import Declared, InputError, resolve
from edgeorch.errors import ModelError
from edgeorch.models import EXPORTERS, model_name
from edgeorch.models.export_ncnn import declare_input, ignored, unconverted
from edgeorch.recipes import load_recipes

NCNN = EXPORTERS["ncnn"]

# What pnnx writes for a network (squeezenet1_1's head, cut short): the Input layer declares no shape.
PNNX = """7767517
4 4
Input                    in0                      0 1 in0
Convolution              convrelu_0               1 1 in0 1 0=64 1=3 11=3 12=1 13=2 14=0 2=1 3=2 4=0 5=1 6=1728 9=1
Pooling                  gap                      1 1 1 2 0=1 4=1
Flatten                  flatten_0                1 1 2 out0
"""


def param(*layers, blobs=9):
    return "\n".join(["7767517", f"{len(layers)} {blobs}", *layers]) + "\n"


def test_an_input_layer_without_a_shape_is_left_to_input_shape():
    assert param_inputs(PNNX) == [Declared("in0", None, "float32")]
    with pytest.raises(InputError, match=r"input 'in0' of the model has no declared shape.*--input-shape in0="):
        resolve(param_inputs(PNNX))


def test_the_shape_an_input_layer_declares_is_read_batch_first():
    text = param("Input data 0 1 data 0=227 1=227 2=3", "Input mask 0 1 mask 0=7", "Input seq 0 1 seq 0=5 1=2",
                 "Input vol 0 1 vol 0=8 1=8 11=4 2=2", "Input any 0 1 any 0=0 1=0 2=3")
    assert param_inputs(text) == [Declared("data", (1, 3, 227, 227), "float32"), Declared("mask", (1, 7), "float32"),
                                  Declared("seq", (1, 2, 5), "float32"), Declared("vol", (1, 2, 4, 8, 8), "float32"),
                                  Declared("any", (1, 3, None, None), "float32")]
    # a dimension the file leaves open is asked for, the batch of 1 kept fixed
    with pytest.raises(InputError, match=r"dynamic dimensions \[1, 3, \?, \?\].*--input-shape any=1x3x<\?>x<\?>"):
        resolve(param_inputs(text)[4:])
    assert resolve(param_inputs(text)[4:], {"any": (1, 3, 32, 32)})[0]["shape"] == [1, 3, 32, 32]
    with pytest.raises(InputError, match="dimension 0 of input 'any' is fixed at 1"):
        resolve(param_inputs(text)[4:], {"any": (2, 3, 32, 32)})


@pytest.mark.parametrize(("text", "why"), [
    ("7767518\n1 1\nInput in0 0 1 in0\n", "its first line is '7767518', not ncnn's magic number 7767517"),
    ("", "its first line is '', not ncnn's magic number"),
    ("7767517\nInput in0 0 1 in0\n", "its second line is not the layer and blob counts"),
    ("7767517\n2 2\nInput in0 0 1 in0\n", "its header says 2 layers, and it has 1"),
    ("7767517\n1 2\nReLU relu 1 1 in0\n", "line 3 names fewer blobs than its layer relu takes and gives"),
    ("7767517\n1 1\nInput in0 0 1 in0 w=224\n", "'w=224' of layer in0 is not a KEY=VALUE param"),
    ("7767517\n1 1\nInput in0 0 1 in0 0=big\n", "Input layer in0 has 0='big', not a whole number"),
])
def test_a_text_that_is_not_a_param_is_refused_saying_why(text, why):
    with pytest.raises(ValueError, match=why.replace("[", r"\[")):
        param_inputs(text)


def test_the_exporter_declares_the_zoo_shape_where_pnnx_wrote_none():
    text = declare_input(PNNX, (1, 3, 224, 224))
    assert text.splitlines()[2].split() == ["Input", "in0", "0", "1", "in0", "0=224", "1=224", "2=3"]
    assert text.splitlines()[3:] == PNNX.splitlines()[3:]  # the rest as pnnx wrote it
    assert param_inputs(text) == [Declared("in0", (1, 3, 224, 224), "float32")]
    assert resolve(param_inputs(text))[0]["shape"] == [1, 3, 224, 224]  # the board needs no --input-shape
    with pytest.raises(ModelError, match="ncnn cannot take an input of shape"):
        declare_input(PNNX, (2, 3, 224, 224))  # ncnn has no batch axis
    with pytest.raises(ModelError, match="pnnx wrote 1 Input layers, not one without a shape"):
        declare_input(text, (1, 3, 224, 224))


def test_the_operators_pnnx_left_unconverted_are_named():
    text = param("Input in0 0 1 in0", "pnnx.Expression pnnx_expr_6 0 1 1", "ReLU relu_0 1 1 in0 2",
                 "torch.fft.rfft torch.fft.rfft_0 1 1 2 3", "aten::sort pnnx_10 3 2 4 5 1 6 7",
                 "pnnx.Expression pnnx_expr_1 0 1 5")
    known = {"Input", "ReLU"}.__contains__
    assert unconverted(text, known) == {"aten::sort": "pnnx_10", "pnnx.Expression": "pnnx_expr_6, pnnx_expr_1",
                                        "torch.fft.rfft": "torch.fft.rfft_0"}
    assert unconverted(PNNX, {"Input", "Convolution", "Pooling", "Flatten"}.__contains__) == {}
    output = "############# pass_ncnn\nignore torch.fft.rfft torch.fft.rfft_0 param n=None\nignore F.x y param a=1\n"
    assert ignored(output, {"torch.fft.rfft": ""}) == " (pnnx: ignore torch.fft.rfft torch.fft.rfft_0 param n=None)"
    assert ignored("", {"torch.fft.rfft": ""}) == ""


def test_the_weights_are_the_same_name_beside_the_param(tmp_path):
    assert NCNN.companions(tmp_path / "squeezenet1_1-ab12.param") == (tmp_path / "squeezenet1_1-ab12.bin",)
    assert companion("/m/x.y.param") == "/m/x.y.bin"


@pytest.fixture
def model(tmp_path):
    """A user's .param and its .bin: Input -> ReLU."""
    path = tmp_path / "mine.param"
    path.write_text(param("Input in0 0 1 in0 0=4 1=4 2=3", "ReLU relu 1 1 in0 out0", blobs=2))
    (tmp_path / "mine.bin").write_bytes(b"")
    return path


def test_a_users_param_with_its_bin_is_taken(model):
    NCNN.validate(model)
    assert model_name(str(model), "ncnn") == "mine"


def test_a_param_without_its_bin_is_refused_naming_the_file_to_copy(model):
    model.with_suffix(".bin").unlink()
    with pytest.raises(ModelError, match=r"mine.param needs mine.bin beside it") as e:
        NCNN.validate(model)
    assert "copy mine.bin next to mine.param" in e.value.hint


@pytest.mark.parametrize(("name", "content", "message"), [
    ("mine.onnx", b"7767517\n", "is not a ncnn model: its name does not end in .param"),
    ("mine.param", b"", "is empty"),
    ("mine.param", b"name: 'caffe net'\nlayer {}\n", "is not an ncnn .param file: its first line is \"name: 'caffe"),
    ("mine.param", BINARY_MAGIC + b"\x00\x01", "is not an ncnn .param file: it is a binary .param"),
    ("mine.param", b"\xff\xfe\x00garbage", "is not an ncnn .param file: it is not text"),
    ("mine.param.bin", BINARY_MAGIC, "is a binary ncnn param \\(ncnn2mem's .param.bin\\)"),
    ("mine.param", param("ReLU relu 1 1 a b").encode(), "has no Input layer"),
])
def test_a_file_that_is_not_a_text_param_is_refused_saying_what_it_is(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    (tmp_path / "mine.bin").write_bytes(b"")
    with pytest.raises(ModelError, match=message) as e:
        NCNN.validate(path)
    assert str(path) in e.value.message and e.value.hint


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        NCNN.validate(tmp_path / "gone.param")


def test_layers_this_ncnn_does_not_know_are_refused_with_what_runs_it_instead(model):
    pytest.importorskip("ncnn")
    model.write_text(param("Input in0 0 1 in0", "torch.fft.rfft rfft_0 1 1 in0 out0", blobs=2))
    with pytest.raises(ModelError, match=r"types ncnn \S+ does not know: torch.fft.rfft \(rfft_0\)") as e:
        NCNN.validate(model)
    assert "pytorch or onnxruntime" in e.value.hint


def test_ncnn_takes_one_image_batch_first():
    check_shape("in0", (1, 3, 224, 224))
    check_shape("in0", (1, 5))
    for shape in ((2, 3, 224, 224), (3, 224, 224), (), (1, 2, 3, 4, 5, 6)):
        with pytest.raises(InputError, match="'in0'"):
            check_shape("in0", shape)
    with pytest.raises(InputError, match="ncnn runs one image per inference.*--input-shape in0=1x3x224x224"):
        check_shape("in0", (4, 3, 224, 224))


def test_only_the_precisions_ncnn_has_are_options():
    adapter = get("ncnn")
    assert adapter.OPTIONS == {"precision": ("fp32", "fp16")}
    with pytest.raises(OptionError, match="precision='int8' is not one of"):
        adapter({"precision": "int8"})  # refused before ncnn is imported: also where it is not installed
    with pytest.raises(OptionError, match="unknown option 'vulkan'"):
        adapter({"vulkan": "on"})


def test_a_batch_of_several_images_is_refused_before_converting():
    from edgeorch.models import zoo

    with pytest.raises(ModelError, match="for 4 images per inference to ncnn: ncnn runs one image at a time"):
        NCNN.convert(zoo.lookup("squeezenet1_1", 4))


def test_a_missing_converter_is_named_with_its_fix(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setitem(sys.modules, "pnnx", None)  # import pnnx raises ImportError
    with pytest.raises(ModelError, match="cannot convert googlenet to ncnn: the pnnx package is not installed") as e:
        NCNN.toolchain("googlenet")
    assert "pip install -e '.[models]'" in e.value.hint


def test_the_recipe_serves_every_arch_and_python_with_every_package_pinned():
    recipe = load_recipes()["ncnn"]
    assert recipe.model_format == "ncnn" and set(recipe.arches) == {Arch.ARM64, Arch.AMD64, Arch.ARMV7}
    for arch in Arch:
        for python, release in (("3.9", "bullseye"), ("3.11", "bookworm"), ("3.13", "trixie")):
            build = recipe.build_for(arch, (python,), release)
            assert build is not None and recipe.why_not(arch, python, release) is None, (arch, python)
            assert recipe.packages_for(build, arch) == (f"ncnn=={build.version}",)
    assert all("==" in p and "{" not in p for b in recipe.builds for p in recipe.packages_for(b, Arch.ARMV7))


def test_the_param_reader_keeps_every_layer():
    layers = parse_param(PNNX)
    assert [(layer.type, layer.bottoms, layer.tops) for layer in layers] == [
        ("Input", [], ["in0"]), ("Convolution", ["in0"], ["1"]), ("Pooling", ["1"], ["2"]),
        ("Flatten", ["2"], ["out0"])]
    assert layers[1].params[6] == "1728" and layers[2].params == {0: "1", 4: "1"}


def test_a_users_param_is_checked_against_input_shape_on_the_host_before_anything_is_sent(tmp_path):
    """The board's message, before the image and the model go over a slow link: an Input with no shape needs
    --input-shape, and a shape the file fixes is kept."""
    from edgeorch.console import REPORTER
    from edgeorch.errors import ConfigError
    from edgeorch.inventory import Board
    from edgeorch.plan import StopRule, mode_arms
    from edgeorch.sweep import plan_sweep, resolve_models
    path = tmp_path / "open.param"
    path.write_text(PNNX)
    (tmp_path / "open.bin").write_bytes(b"")
    board = Board(name="pi3", host="h", user="u", arch=Arch.ARMV7)

    def planned(**given):
        return resolve_models(plan_sweep([board], framework="ncnn", model=str(path), arms=[mode_arms(("bare",))],
                                         rule=StopRule(), iterations=5, warmup=1, threads=0, min_time=0, **given),
                              REPORTER)

    with pytest.raises(ConfigError, match="ncnn model open: input 'in0' of the model has no declared shape") as e:
        planned()
    assert e.value.exit_code == 2 and "--input-shape NAME=DIMS" in e.value.hint
    sweep = planned(input_shapes=("in0=1x3x32x32",))
    assert sweep.spec(sweep.cells["pi3"][0]).path == path
    with pytest.raises(ConfigError, match="names 'x', which is not an input of the model; its inputs are: in0"):
        planned(input_shapes=("x=1x3x32x32",))


def test_pnnx_is_in_the_command_log_with_its_exit_and_output(monkeypatch, tmp_path):
    """The converter is a command like any other: a failed conversion's pnnx line, exit code and output are in the
    run's commands.log (a fake pnnx that fails; the trace before it is real)."""
    pytest.importorskip("torch")
    pytest.importorskip("pnnx")
    pytest.importorskip("ncnn")
    import subprocess

    from edgeorch import console as con
    from edgeorch.models import zoo
    log = con.CommandLog()
    log.begin()
    monkeypatch.setattr(con, "commands", log)
    monkeypatch.setattr(subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(argv, 3, "", "pnnx: no"))
    with pytest.raises(ModelError, match=r"pnnx could not convert squeezenet1_1 to ncnn \(exit status 3\): pnnx: no"):
        NCNN.convert(zoo.lookup("squeezenet1_1", 1))
    log.close(tmp_path / "commands.log")
    text = (tmp_path / "commands.log").read_text()
    [entry] = [line for line in text.splitlines() if " exit " in line]
    assert "exit 3" in entry and "pnnx model.pt 'inputshape=[1,3,224,224]f32' fp16=0" in entry
    assert "| pnnx: no" in text  # its output under it
