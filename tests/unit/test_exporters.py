"""edgeorch.models' exporters without converting anything: the registry, the cache keys and how resolve uses them."""

import ast
import importlib.util
import inspect
import shutil
import sys
from pathlib import Path

import pytest

from edgeorch.bench import protowire
from edgeorch.models import EAGER, EXPORTERS, INT8, NETWORKS, Exporter, resolve, zoo, zoo_models
from edgeorch.recipes import load_recipes

PACKAGE = Path(zoo.__file__).parent
ALL = [e for exporter in EXPORTERS.values() for e in (exporter, *exporter.variants)]
NAMES = [type(e).__name__ + e.variant for e in ALL]


def test_every_recipes_model_format_has_an_exporter():
    # TensorRT's recipe names onnx: its engine is built on the board from the ONNX file, so it needs no exporter.
    formats = {r.framework: r.model_format for r in load_recipes().values()}
    assert formats["tensorrt"] == "onnx"
    assert {f for f in formats.values() if f not in EXPORTERS} == set()
    for framework, model_format in formats.items():
        assert set(NETWORKS) <= set(zoo_models(model_format)), framework


def test_each_exporter_is_registered_under_its_format_with_its_variants():
    for model_format, exporter in EXPORTERS.items():
        assert isinstance(exporter, Exporter) and exporter.format == model_format and not exporter.variant
        assert exporter.suffix.startswith(".") and "{name}" in exporter.doing
        for variant in exporter.variants:
            assert variant.format == model_format and variant.variant and not variant.variants
    assert [v.variant for v in EXPORTERS["tflite"].variants] == [INT8]
    assert [(v.variant, v.suffix) for v in EXPORTERS["torchscript"].variants] == [(EAGER, ".pt2")]
    assert zoo_models("torchscript") == [*NETWORKS, *(n + EAGER for n in NETWORKS)]
    assert zoo_models("tensorrt-engine") == []


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:  # a name inside a module, not a module
        return None
    return Path(spec.origin) if spec else None


def _edgeorch_imports(path: Path) -> set[Path]:
    """The files of the edgeorch modules that the module at `path`, in the package, imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(filter(None, ("edgeorch.models", node.module))) if node.level else node.module
            if base.split(".")[0] == "edgeorch":  # find_spec imports the parents: never torch's or TensorFlow's
                # `from package import module` names the module; `from module import name`, the module
                found |= {_module_file(f"{base}.{a.name}") or _module_file(base) for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {_module_file(a.name) for a in node.names if a.name.split(".")[0] == "edgeorch"}
    return found


@pytest.mark.parametrize("exporter", ALL, ids=NAMES)
def test_the_cache_key_covers_every_edgeorch_source_its_exporter_imports(exporter):
    files = set(exporter.files())
    # the module whose convert makes the bytes: OpenCV-DNN's exporter converts with ONNX Runtime's, under its key
    module = Path(inspect.getfile(type(exporter).convert))
    assert {PACKAGE / "zoo.py", PACKAGE / "exporter.py", module} <= files
    # errors, the cache, the command log (a converter's command line recorded)
    makes_no_bytes = {Path(sys.modules[f"edgeorch.{name}"].__file__) for name in ("errors", "cache", "console")}
    assert _edgeorch_imports(module) - makes_no_bytes <= files
    assert all(f.is_file() for f in files)


@pytest.mark.parametrize("exporter", [e for e in ALL if e.format != "tflite" and e.format != "tf-graph"],
                         ids=lambda e: type(e).__name__ + e.variant)
def test_editing_a_source_file_changes_the_cache_path(exporter, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    path = exporter.path("resnet18", 1, tmp_path)
    assert path.parent == tmp_path.resolve() and path.name.startswith("resnet18" + exporter.variant + "-")
    assert path.suffix == exporter.suffix and exporter.path("resnet18", 1, tmp_path) == path
    assert exporter.path("resnet18", 2, tmp_path).name.startswith(f"resnet18_b2{exporter.variant}-")
    module = sys.modules[type(exporter).__module__]
    for owner in {zoo, module, protowire, sys.modules["edgeorch.models.exporter"]}:
        copy = tmp_path / owner.__name__ / Path(owner.__file__).name
        copy.parent.mkdir()
        shutil.copy(owner.__file__, copy)
        monkeypatch.setattr(owner, "__file__", str(copy))
        assert exporter.path("resnet18", 1, tmp_path) == path  # the same bytes: the same key
        copy.write_text(copy.read_text() + "\n# edited\n")
        edited = exporter.path("resnet18", 1, tmp_path)
        assert (edited != path) == (copy.name in {p.name for p in exporter.files()}), owner.__name__
        monkeypatch.undo()


def test_no_module_of_the_package_uses_another_ones_private_names():
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        modules = set()  # the names that edgeorch modules are bound to here
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or node.module.startswith("edgeorch")):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
                modules |= {a.asname or a.name for a in node.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                assert not (node.attr.startswith("_") and not node.attr.startswith("__")), \
                    f"{path.name} uses {node.value.id}.{node.attr}"


class FakeExporter(Exporter):
    format, suffix, doing = "onnx", ".onnx", "faking {name}"

    def __init__(self, variant=""):
        self.variant, self.made = variant, []
        self.variants = () if variant else (FakeExporter("_fake"),)

    def toolchain(self, network):
        return "fake=1"

    def convert(self, network):
        self.made.append(network.input_shape)
        return network.name.encode()


def test_resolve_hands_a_zoo_name_to_its_formats_exporter_or_variant(tmp_path, monkeypatch):
    fake = FakeExporter()
    monkeypatch.setitem(EXPORTERS, "onnx", fake)
    logged = []
    spec = resolve("googlenet", "onnx", cache_dir=tmp_path, log=logged.append, batch=4)
    assert fake.made == [(4, 3, 224, 224)] and fake.variants[0].made == []
    assert logged == ["faking googlenet (first time only)"] and spec.path.read_bytes() == b"googlenet"
    assert spec.name == "googlenet" and spec.builtin and spec.path.parent == tmp_path.resolve() / "models"
    assert spec.path.name.startswith("googlenet_b4-") and spec.path.suffix == ".onnx"
    assert resolve("googlenet", "onnx", cache_dir=tmp_path, log=logged.append, batch=4) == spec
    assert len(logged) == 1 and len(fake.made) == 1  # a cache hit
    variant = resolve("googlenet_fake", "onnx", cache_dir=tmp_path)
    assert fake.variants[0].made == [(1, 3, 224, 224)] and variant.name == "googlenet_fake"
    assert variant.path.name.startswith("googlenet_fake-")
    assert zoo_models("onnx") == [*NETWORKS, *(n + "_fake" for n in NETWORKS)]
