"""edgeorch.models without TensorFlow: validating .tflite files, resolving names and paths, the builtin cache."""

import hashlib
import os
import re
import struct
import subprocess
import sys
import types
from pathlib import Path

import pytest

from edgeorch.errors import ModelError
from edgeorch.models import BUILTIN_MODELS, ModelSpec, cached_path, model_name, resolve_model, tflite, validate_tflite


def minimal_tflite() -> bytes:
    """A structurally valid 68-byte TFLite Model flatbuffer: one empty subgraph, one empty buffer."""
    return (
        struct.pack("<I4s", 24, b"TFL3")  # root table at 24, file identifier
        + struct.pack("<7Hxx", 14, 16, 4, 0, 8, 0, 12)  # Model vtable: version, subgraphs, buffers (+2 padding)
        + struct.pack("<iIII", 16, 3, 12, 16)  # Model: vtable at 24-16, version 3, subgraphs at 44, buffers at 52
        + struct.pack("<HH", 4, 4)  # the vtable of an empty table, at 40
        + struct.pack("<II", 1, 12)  # subgraphs: one table, at 60
        + struct.pack("<II", 1, 8)  # buffers: one table, at 64
        + struct.pack("<ii", 20, 24)  # the empty SubGraph and Buffer tables, both using the vtable at 40
    )


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def place_cached(name: str, cache_dir: Path, data: bytes, sidecar: bytes | None) -> Path:
    path = cached_path(name, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if sidecar is not None:
        path.with_name(path.name + ".sha256").write_bytes(sidecar)
    return path


@pytest.fixture
def no_build(monkeypatch):
    def fail(name):
        raise AssertionError(f"{name} was rebuilt")

    monkeypatch.setattr(tflite, "_build", fail)


@pytest.fixture
def fake_build(monkeypatch):
    built = []

    def build(name):
        built.append(name)
        return minimal_tflite()

    monkeypatch.setattr(tflite, "_build", build)
    return built


def test_minimal_model_is_valid(tmp_path):
    validate_tflite(write(tmp_path / "m.tflite", minimal_tflite()))


def test_any_file_name_is_accepted_if_the_content_is_tflite(tmp_path):
    validate_tflite(write(tmp_path / "model.bin", minimal_tflite()))


def test_text_file_is_rejected(tmp_path):
    path = write(tmp_path / "notes.tflite", b"this is not a model\njust some text\n")
    with pytest.raises(ModelError) as err:
        validate_tflite(path)
    assert str(path) in err.value.message
    assert "not a TFLite model (it looks like a text file)" in err.value.message
    assert "convert" in err.value.hint


def test_binary_non_tflite_is_rejected_without_calling_it_text(tmp_path):
    path = write(tmp_path / "model.h5", b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(ModelError, match=r"is not a TFLite model: bytes 4-8 are") as err:
        validate_tflite(path)
    assert "text" not in err.value.message


def test_empty_file_is_rejected(tmp_path):
    path = write(tmp_path / "m.tflite", b"")
    with pytest.raises(ModelError, match=re.escape(f"model file {path} is empty")) as err:
        validate_tflite(path)
    assert err.value.hint


@pytest.mark.parametrize("cut", range(8, len(minimal_tflite())))
def test_every_truncation_after_the_header_is_caught(tmp_path, cut):
    path = write(tmp_path / "m.tflite", minimal_tflite()[:cut])
    with pytest.raises(ModelError, match=re.escape(f"model file {path} is truncated or corrupt: ")) as err:
        validate_tflite(path)
    assert "again" in err.value.hint


def test_truncation_inside_the_header_says_not_tflite(tmp_path):
    path = write(tmp_path / "m.tflite", minimal_tflite()[:6])
    with pytest.raises(ModelError, match="is not a TFLite model"):
        validate_tflite(path)


@pytest.mark.parametrize(
    "data",
    [
        struct.pack("<I4s", 0xFFFF_FF00, b"TFL3") + bytes(64),  # root offset past the end
        b"\0\0\0\0TFL3" + bytes(8),  # right identifier, nothing behind it
        minimal_tflite()[:48] + struct.pack("<I", 1000) + minimal_tflite()[52:],  # a vector offset past the end
    ],
)
def test_right_identifier_but_broken_structure_is_rejected(tmp_path, data):
    with pytest.raises(ModelError, match="truncated or corrupt"):
        validate_tflite(write(tmp_path / "m.tflite", data))


def test_directory_is_rejected(tmp_path):
    with pytest.raises(ModelError, match="is not a file"):
        validate_tflite(tmp_path)


def test_unknown_name_lists_the_builtins(tmp_path):
    with pytest.raises(ModelError, match="unknown model 'mobilenetv2'") as err:
        resolve_model("mobilenetv2", cache_dir=tmp_path)
    assert all(name in err.value.hint for name in BUILTIN_MODELS)


def test_missing_path_says_it_does_not_exist(tmp_path):
    missing = tmp_path / "gone" / "model.tflite"
    with pytest.raises(ModelError, match=re.escape(f"model file {missing} does not exist")) as err:
        resolve_model(str(missing), cache_dir=tmp_path)
    assert "tiny" in err.value.hint


def test_user_file_resolves_to_an_absolute_path_and_its_digest(tmp_path, monkeypatch):
    write(tmp_path / "net.tflite", minimal_tflite())
    monkeypatch.chdir(tmp_path)
    spec = resolve_model("net.tflite", cache_dir=tmp_path / "cache")
    assert spec == ModelSpec(
        name="net",
        path=tmp_path.resolve() / "net.tflite",
        sha256=hashlib.sha256(minimal_tflite()).hexdigest(),
        builtin=False,
    )


def test_cached_path_is_absolute_keyed_and_distinct_per_builtin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = {name: cached_path(name, Path("cache")) for name in BUILTIN_MODELS}
    for name, path in paths.items():
        assert path.is_absolute() and path.parent == tmp_path.resolve() / "cache" / "models"
        assert re.fullmatch(rf"{name}-[0-9a-f]{{12}}\.tflite", path.name)
        assert cached_path(name, Path("cache")) == path
    assert len({p.name.rsplit("-", 1)[1] for p in paths.values()}) == len(paths)


def test_cache_hit_does_not_build(tmp_path, no_build):
    digest = hashlib.sha256(minimal_tflite()).hexdigest()
    path = place_cached("tiny", tmp_path, minimal_tflite(), f"{digest}  whatever.tflite\n".encode())
    logged = []
    spec = resolve_model("tiny", cache_dir=tmp_path, log=logged.append)
    assert spec == ModelSpec(name="tiny", path=path, sha256=digest, builtin=True)
    assert logged == []


@pytest.mark.parametrize(
    "sidecar", [None, b"0" * 64, b"", b"\xff\xfe\x00"], ids=["no-sidecar", "wrong-digest", "empty", "binary-junk"]
)
def test_cache_without_a_matching_sidecar_is_rebuilt(tmp_path, fake_build, sidecar):
    path = place_cached("tiny", tmp_path, b"half a model", sidecar)
    logged = []
    spec = resolve_model("tiny", cache_dir=tmp_path, log=logged.append)
    digest = hashlib.sha256(minimal_tflite()).hexdigest()
    assert fake_build == ["tiny"]
    assert spec == ModelSpec(name="tiny", path=path, sha256=digest, builtin=True)
    assert path.read_bytes() == minimal_tflite()
    assert path.with_name(path.name + ".sha256").read_text() == f"{digest}  {path.name}\n"
    assert any("building tiny" in line for line in logged)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".sha256"]  # no temp files left


def test_a_built_model_is_then_a_cache_hit(tmp_path, fake_build):
    first = resolve_model("tiny_int8", cache_dir=tmp_path)
    assert resolve_model("tiny_int8", cache_dir=tmp_path) == first
    assert fake_build == ["tiny_int8"]


def test_a_broken_build_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(tflite, "_build", lambda name: b"garbage")
    with pytest.raises(ModelError, match="not a TFLite model"):
        resolve_model("tiny", cache_dir=tmp_path)
    assert not cached_path("tiny", tmp_path).with_name(cached_path("tiny", tmp_path).name + ".sha256").exists()


def test_failed_write_leaves_no_partial_file(tmp_path, fake_build, monkeypatch):
    def interrupted(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(ModelError, match="cannot write tiny-[0-9a-f]+.tflite to .*No space left on device"):
        resolve_model("tiny", cache_dir=tmp_path)
    assert list((tmp_path / "models").iterdir()) == []


def test_missing_tensorflow_names_the_model_and_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` raise ImportError
    with pytest.raises(ModelError, match="cannot build builtin model tiny: TensorFlow is not installed") as err:
        resolve_model("tiny", cache_dir=tmp_path)
    assert "pip install -e '.[models]'" in err.value.hint and ".tflite" in err.value.hint
    assert not (tmp_path / "models").exists() or list((tmp_path / "models").iterdir()) == []


def test_build_chatter_is_hidden_but_shown_on_failure(tmp_path, monkeypatch, capfd):
    def broken_arch():
        os.write(2, b"native: kernel registration failed\n")
        print("Saved artifact at /tmp/x")
        raise RuntimeError("converter exploded")

    fake_keras = types.SimpleNamespace(
        utils=types.SimpleNamespace(clear_session=lambda: None, set_random_seed=lambda seed: None)
    )
    monkeypatch.setitem(sys.modules, "keras", fake_keras)
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    monkeypatch.setitem(tflite._RECIPES, "tiny", (broken_arch, False))
    with pytest.raises(ModelError, match="building model tiny failed: RuntimeError: converter exploded") as err:
        resolve_model("tiny", cache_dir=tmp_path)
    assert "native: kernel registration failed" in err.value.message
    out, errout = capfd.readouterr()
    assert out == errout == ""


def test_importing_the_module_does_not_import_tensorflow_or_numpy():
    code = "import sys, edgeorch.models; print(sorted({'tensorflow', 'keras', 'numpy'} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_batch_is_refused_for_models_the_zoo_does_not_make(tmp_path):
    with pytest.raises(ModelError, match="--batch 4 applies to the zoo's networks; tiny takes the batch"):
        model_name("tiny", "tflite", batch=4)
