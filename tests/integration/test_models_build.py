"""Really builds the builtin models with TensorFlow and checks them with the TFLite interpreter (about 20 s)."""

import time
import warnings

import pytest

tf = pytest.importorskip("tensorflow")
np = pytest.importorskip("numpy")

from edgeorch.errors import ModelError  # noqa: E402
from edgeorch.models import BUILTIN_MODELS, resolve_model, tflite, validate_tflite  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built(cache_dir):
    """Each builtin built once into a fresh cache; {name: (spec, log lines, seconds)}."""
    result = {}
    for name in BUILTIN_MODELS:
        logged = []
        start = time.monotonic()
        spec = resolve_model(name, cache_dir=cache_dir, log=logged.append)
        result[name] = spec, logged, time.monotonic() - start
    return result


def interpreter(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter warns it is deprecated in favour of ai_edge_litert
        interp = tf.lite.Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    return interp


def run_once(interp):
    """Invoke on a seeded random input; return the output dequantized to float."""
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    rng = np.random.default_rng(0)
    if np.issubdtype(inp["dtype"], np.integer):
        info = np.iinfo(inp["dtype"])
        data = rng.integers(info.min, info.max, size=inp["shape"], endpoint=True, dtype=inp["dtype"])
    else:
        data = rng.random(inp["shape"], dtype=np.float32)
    interp.set_tensor(inp["index"], data)
    interp.invoke()
    result = interp.get_tensor(out["index"]).astype(np.float32)
    scale, zero = out["quantization"]
    return (result - zero) * scale if scale else result


def test_each_builtin_was_built_once_and_is_valid(built):
    for name, (spec, logged, _) in built.items():
        assert spec.name == name and spec.builtin and spec.path.is_absolute()
        assert spec.path.name.startswith(f"{name}-") and spec.path.suffix == ".tflite"
        assert [line for line in logged if line.startswith("building")] == [logged[-1]]
        validate_tflite(spec.path)


def test_tiny_is_float32_and_runs(built):
    interp = interpreter(built["tiny"][0].path)
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    assert inp["dtype"] == np.float32 and list(inp["shape"]) == [1, 32, 32, 3]
    assert out["dtype"] == np.float32 and list(out["shape"]) == [1, 10]
    y = run_once(interp)
    assert np.all(np.isfinite(y)) and np.ptp(y) > 0


def test_tiny_int8_is_fully_integer_and_runs(built):
    interp = interpreter(built["tiny_int8"][0].path)
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    for tensor in inp, out:
        assert tensor["dtype"] in (np.int8, np.uint8)
        scale, _zero = tensor["quantization"]
        assert scale > 0
    assert list(inp["shape"]) == [1, 32, 32, 3] and list(out["shape"]) == [1, 10]
    dtypes = {np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    assert "float32" not in dtypes and dtypes <= {"int8", "uint8", "int32"}  # int32 only for biases
    y = run_once(interp)
    assert np.all(np.isfinite(y)) and np.ptp(y) > 0


def test_second_resolve_is_a_cache_hit(built, cache_dir, monkeypatch):
    def fail(name):
        raise AssertionError(f"{name} was rebuilt")

    monkeypatch.setattr(tflite, "_build", fail)
    for name, (spec, _, _) in built.items():
        logged = []
        assert resolve_model(name, cache_dir=cache_dir, log=logged.append) == spec
        assert logged == []


def test_builds_are_reproducible(built, tmp_path):
    for name in "tiny", "tiny_int8":
        again = resolve_model(name, cache_dir=tmp_path)
        assert again.sha256 == built[name][0].sha256
        assert again.path != built[name][0].path


def test_truncated_real_models_are_rejected(built, tmp_path):
    for name in "tiny", "tiny_int8":
        data = built[name][0].path.read_bytes()
        for cut in [*range(8, len(data), max(1, len(data) // 97)), len(data) - 4, len(data) - 1]:
            path = tmp_path / f"{name}-{cut}.tflite"
            path.write_bytes(data[:cut])
            with pytest.raises(ModelError, match="truncated or corrupt"):
                validate_tflite(path)
            path.unlink()
