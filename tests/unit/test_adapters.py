"""Board-side adapter logic that needs no framework: options, the lazy registry, and the data each input is fed."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeorch.bench import adapters
from edgeorch.bench.adapters.base import INT_HIGH, Adapter, OptionError, arrays, check_options
from edgeorch.bench.signature import Declared, InputError, resolve

ROOT = Path(__file__).resolve().parents[2]


def test_options_are_checked_against_what_the_adapter_knows():
    assert check_options({"xnnpack": "off"}, xnnpack=("on", "off")) == {"xnnpack": "off"}
    with pytest.raises(OptionError, match="unknown option 'threads'; this framework knows \\['xnnpack'\\]"):
        check_options({"threads": "4"}, xnnpack=("on", "off"))
    with pytest.raises(OptionError, match="xnnpack='maybe' is not one of \\['on', 'off'\\]"):
        check_options({"xnnpack": "maybe"}, xnnpack=("on", "off"))
    with pytest.raises(OptionError, match="knows none"):
        check_options({"precision": "fp16"})


def test_every_framework_of_the_recipes_has_an_adapter():
    from edgeorch.recipes import load_recipes

    assert set(load_recipes()) == set(adapters.names())
    assert {name: adapters.get(name).name for name in adapters.names()} == {n: n for n in adapters.names()}


def test_the_registry_imports_only_the_adapter_asked_for():
    code = ("import sys; from edgeorch.bench import adapters; adapters.get('onnxruntime'); "
            "print(sorted(m for m in sys.modules if m.startswith('edgeorch.bench.adapters.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["['edgeorch.bench.adapters.base',", "'edgeorch.bench.adapters.onnxruntime']"]


def test_every_input_of_a_multi_input_model_gets_valid_seeded_data():
    declared = [Declared("image", (1, 3, 4, 4), "float32"), Declared("ids", (2, 5), "int64"),
                Declared("length", (), "int64"), Declared("mask", (5,), "bool"), Declared("half", (2,), "float16")]
    data, made_up = arrays(Adapter(), resolve(declared), seed=0)
    assert [(a.shape, a.dtype.name) for a in data] == [((1, 3, 4, 4), "float32"), ((2, 5), "int64"), ((), "int64"),
                                                       ((5,), "bool"), ((2,), "float16")]
    # integers are indices or lengths far more often than not: small and non-negative, never the dtype's extremes
    assert all(0 <= a.min() and a.max() < INT_HIGH for a in data[1:3])
    assert data[0].std() > 0.1  # float inputs are not constant
    again, _ = arrays(Adapter(), resolve(declared), seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(data, again))  # seeded: the same data in both modes
    other, _ = arrays(Adapter(), resolve(declared), seed=1)
    assert not np.array_equal(data[0], other[0])
    # every input is named as made up, with the values it was given (what a failed run reports)
    assert made_up[1:4] == [{"name": "ids", "dtype": "int64", "shape": [2, 5], "range": f"integers in [0, {INT_HIGH})"},
                            {"name": "length", "dtype": "int64", "shape": [], "range": f"integers in [0, {INT_HIGH})"},
                            {"name": "mask", "dtype": "bool", "shape": [5], "range": "booleans, False or True"}]
    assert [m["name"] for m in made_up] == ["image", "ids", "length", "mask", "half"]
    assert made_up[0]["range"] == "standard normal floats" and made_up[0]["shape"] == [1, 3, 4, 4]


def test_a_file_is_fed_as_it_is_and_the_rest_seeded(tmp_path):
    np.save(tmp_path / "ids.npy", np.arange(10, dtype=np.int64).reshape(2, 5))
    declared = [Declared("image", ("batch", 3), "float32"), Declared("ids", (2, 5), "int64")]
    resolved = resolve(declared, {"image": (4, 3)}, {"ids": str(tmp_path / "ids.npy")})
    assert [(i["name"], i["shape"], i["source"]) for i in resolved] == [("image", [4, 3], "seeded"),
                                                                         ("ids", [2, 5], "file")]
    (image, ids), made_up = arrays(Adapter(), resolved, seed=0)
    assert image.shape == (4, 3) and ids.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert [m["name"] for m in made_up] == ["image"]  # the user's file is not made up


def test_a_file_that_changed_after_the_check_is_refused(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((1, 3), np.float32))
    resolved = resolve([Declared("x", (1, 3), "float32")], files={"": str(path)})
    np.save(path, np.zeros((1, 3), np.float64))
    with pytest.raises(InputError, match=r"is float64\[1, 3\], the model takes float32\[1, 3\]"):
        arrays(Adapter(), resolved, seed=0)
