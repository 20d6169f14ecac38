"""DarkNet through OpenCV-DNN, without OpenCV: the .cfg's declared input, the checks a Darknet network gets before
anything runs, its weights travelling beside it to the board and into the container, and what the adapter says where
the board's OpenCV has no Darknet importer. (tests/integration/test_darknet.py runs it in cv2.)"""

import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from edgeorch.bench.signature import Declared, InputError, check_inputs, darknet_inputs
from edgeorch.errors import ModelError
from edgeorch.models import EXPORTERS, model_name, resolve
from edgeorch.recipes import get_recipe

from ..darknet_net import CFG, write_darknet_net


@pytest.fixture
def net(tmp_path) -> Path:
    return write_darknet_net(tmp_path)


def refused(path, fix: str) -> ModelError:
    with pytest.raises(ModelError) as e:
        model_name(str(path), "opencv-dnn")
    assert fix in e.value.hint and e.value.exit_code == 4
    return e.value


def test_opencv_takes_the_darknet_format_and_the_zoos_onnx_files():
    assert get_recipe("opencv").model_format == "opencv-dnn"
    assert get_recipe("onnxruntime").model_format == "onnx"


def test_the_zoos_onnx_file_serves_opencv_and_onnxruntime_alike(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    opencv, onnx = EXPORTERS["opencv-dnn"], EXPORTERS["onnx"]
    assert opencv.path("squeezenet1_1", 1, tmp_path) == onnx.path("squeezenet1_1", 1, tmp_path)
    assert opencv.path("squeezenet1_1", 4, tmp_path) == onnx.path("squeezenet1_1", 4, tmp_path)


def test_the_net_section_declares_one_input_of_channels_height_width(net):
    # the training batch (64) is not the input's: Darknet's test mode and OpenCV take the blob's
    assert darknet_inputs(net) == [Declared("data", (1, 3, 6, 8), "float32", False, True)]
    assert model_name(str(net), "opencv-dnn") == "tiny"


def test_opencvs_defaults_fill_what_the_net_section_leaves_out(tmp_path):
    cfg = tmp_path / "d.cfg"
    cfg.write_text("[net]\nbatch=1\n\n[maxpool]\nsize=2\n")
    assert darknet_inputs(cfg)[0].dims == (1, 3, 416, 416)


def test_another_shape_is_fed_as_opencv_reshapes_to_the_blob_but_not_another_rank_or_name(net):
    assert check_inputs(net, {"data": (2, 3, 12, 16)})[0]["shape"] == [2, 3, 12, 16]
    with pytest.raises(InputError, match="has 4 dimensions"):
        check_inputs(net, {"data": (3, 12, 16)})
    with pytest.raises(InputError, match="its inputs are: data"):
        check_inputs(net, {"input": (1, 3, 6, 8)})


@pytest.mark.parametrize("text, problem", [
    ("[convolutional]\nfilters=2\nsize=1\n", "no [net] section (its first section is [convolutional])"),
    (CFG.replace("[net]", "[network]"), "OpenCV's importer reads the section as [net] only"),
    ("[net]\nwidth=8\n", "has no layer section after [net]"),
    (CFG.replace("height=6", "height=0"), "its [net] height=0 is not a whole number of at least 1"),
    (CFG.replace("width=8", "width8"), "line 4, 'width8', is neither a [section], a comment nor KEY=VALUE"),
    ("width=8\n[net]\n", "comes before the first [section]"),
])
def test_a_cfg_opencv_cannot_read_is_refused_before_anything_runs(net, text, problem):
    net.write_text(text)
    err = refused(net, "[net]")
    assert problem in err.message, err.message


def test_a_binary_file_named_cfg_is_refused(net):
    net.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    assert "not a Darknet .cfg file" in refused(net, "Darknet network's .cfg").message


def test_the_weights_must_lie_beside_the_cfg(net):
    net.with_suffix(".weights").unlink()
    err = refused(net, "copy tiny.weights next to tiny.cfg")
    assert "tiny.cfg needs tiny.weights beside it" in err.message


@pytest.mark.parametrize("cut, problem", [
    (lambda b: b[:10], "fewer than its 16-byte header"),
    (lambda b: b[:-2], "are not a whole number of float32 values"),
    (lambda b: b[:20], "are not a whole number of float32 values"),
    (lambda b: (2000).to_bytes(4, "little") + b[4:], "its header says version 2000.2"),
])
def test_weights_not_in_darknets_layout_are_refused(net, cut, problem):
    weights = net.with_suffix(".weights")
    weights.write_bytes(cut(weights.read_bytes()))
    assert problem in refused(net, "again").message


def test_the_weights_given_as_the_model_point_to_the_cfg(net):
    err = refused(net.with_suffix(".weights"), "pass tiny.cfg")
    assert "--model takes the network's .cfg" in err.message


def test_a_file_of_neither_format_names_both(tmp_path):
    bad = tmp_path / "net.txt"
    bad.write_text("not a model")
    err = refused(bad, "or a Darknet network's .cfg, its .weights beside it")
    assert "is not a valid ONNX model" in err.message


def test_the_weights_travel_with_the_cfg_and_tell_models_apart(net, tmp_path):
    spec = resolve(str(net), "opencv-dnn", cache_dir=tmp_path)
    assert spec.name == "tiny" and [p.name for p, _ in spec.companions] == ["tiny.weights"]
    weights = net.with_suffix(".weights")
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    other = resolve(str(net), "opencv-dnn", cache_dir=tmp_path)
    assert other.sha256 == spec.sha256 and other.digest != spec.digest  # same .cfg, other weights: another model


def test_the_weights_are_pushed_under_the_cfgs_name_and_named_on_no_command_line(net, tmp_path, monkeypatch):
    from edgeorch import execute

    pushed = []

    def push_file(conn, board, workdir, path, sha256, progress, stem=None):
        pushed.append((path.name, stem))
        return f"{workdir}/models/{stem or sha256[:16]}{path.suffix}"

    monkeypatch.setattr(execute, "push_file", push_file)
    spec = resolve(str(net), "opencv-dnn", cache_dir=tmp_path)
    files = execute._push_files(None, SimpleNamespace(name="b"), "/w", spec, None, None)
    stem = spec.digest[:16]
    assert files == [("--model", f"/w/models/{stem}.cfg"), ("", f"/w/models/{stem}.weights")]
    assert {s for _, s in pushed} == {stem}


def test_the_weights_reach_the_container_beside_the_cfg_and_no_command_line(monkeypatch):
    from edgeorch import runners

    sent = []
    monkeypatch.setattr(runners, "remote", lambda conn, argv, **kw: sent.append(argv) or SimpleNamespace(
        stdout="", stderr="", exited=0))
    files = [("--model", "/w/models/ab.cfg"), ("", "/w/models/ab.weights")]
    runners.DockerRunner(None, "b", "sha256:1", 60).execute(["--framework", "opencv"], files)
    create = next(argv for argv in sent if "docker create" in " ".join(argv[:3]))
    assert create[create.index("--model") + 1] == "/opt/edgeorch/models/ab.cfg"
    assert not any("weights" in a for a in create) and "" not in create[4:]
    copied = [argv[2:] for argv in sent if argv[:2] == ["docker", "cp"]]
    assert [target.split(":", 1)[1] for _, target in copied] == ["/opt/edgeorch/models/ab.cfg",
                                                                 "/opt/edgeorch/models/ab.weights"]
    sent.clear()
    runners.DockerRunner(None, "b", "sha256:1", 60, bind_files=True).execute(["--framework", "opencv"], files)
    create = sent[0]
    assert "type=bind,source=/w/models/ab.weights,target=/opt/edgeorch/models/ab.weights,readonly" in create
    sent.clear()
    runners.NativeRunner(None, "b", "/w/opencv", 60).execute(["--framework", "opencv"], files)
    run = sent[0][sent[0].index("--") + 1:]  # the entrypoint's argv, after the watcher's
    assert "/w/models/ab.cfg" in run and not any("weights" in a for a in run) and "" not in run


def fake_cv2(monkeypatch, darknet: bool) -> list:
    """A cv2 module with what the adapter calls, its Darknet importer (recording what it reads) or none."""
    read = []
    cv2 = ModuleType("cv2")
    cv2.__version__ = "4.11.0" if darknet else "5.1.0"
    cv2.error = type("error", (Exception,), {})
    cv2.setNumThreads = lambda n: None
    net = SimpleNamespace(setPreferableBackend=lambda b: None, setPreferableTarget=lambda t: None)
    cv2.dnn = SimpleNamespace(DNN_BACKEND_OPENCV=0, DNN_TARGET_CPU=0, readNetFromONNX=lambda p: net)
    if darknet:
        cv2.dnn.readNetFromDarknet = lambda cfg, weights: read.append((cfg, weights)) or net
    monkeypatch.setitem(sys.modules, "cv2", cv2)
    return read


def test_the_adapter_reads_the_cfg_with_the_weights_of_its_stem(net, monkeypatch):
    from edgeorch.bench.adapters.opencv import OpenCV

    read = fake_cv2(monkeypatch, darknet=True)
    adapter = OpenCV()
    adapter.load(str(net), 0)
    assert read == [(str(net), str(net.with_suffix(".weights")))]
    assert adapter.inputs() == darknet_inputs(net)


def test_opencv_5_has_no_darknet_importer_and_says_where_to_run_it(net, monkeypatch):
    from edgeorch.bench.adapters.base import ModelLoadError
    from edgeorch.bench.adapters.opencv import OpenCV

    fake_cv2(monkeypatch, darknet=False)
    with pytest.raises(ModelLoadError, match=r"OpenCV 5.1.0 has no Darknet importer .*Python 3.10 to 3.12"):
        OpenCV().load(str(net), 0)


def test_the_board_refuses_a_cfg_whose_weights_did_not_arrive(net, monkeypatch):
    from edgeorch.bench.adapters.base import ModelLoadError
    from edgeorch.bench.adapters.opencv import OpenCV

    fake_cv2(monkeypatch, darknet=True)
    net.with_suffix(".weights").unlink()
    with pytest.raises(ModelLoadError, match=r"tiny.cfg needs its Darknet weights beside it, and .*tiny.weights"):
        OpenCV().load(str(net), 0)
