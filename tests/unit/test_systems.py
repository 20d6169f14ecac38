"""Every system the seed papers measured, in images/systems.toml: each with a status, the frameworks that run it (each
one a recipe under images/), or its reason and source; refused when malformed; printed by `invoke matrix`."""

import pytest
from rich.console import Console

from edgeorch import report
from edgeorch.errors import ConfigError
from edgeorch.recipes import load_recipes
from edgeorch.systems import load_systems

# What the papers under shared/seeds name as measured (Hadidi et al.'s "Caffe1/2" is two systems, its TVM/FINN on
# the PYNQ-Z1 two more); dropping one from the file is a change this test makes someone look at.
MEASURED = {"TensorFlow", "Keras", "TensorFlow Lite", "PyTorch", "Caffe", "Caffe2", "DarkNet", "TensorRT", "cuDNN",
            "OpenCV DNN", "Movidius NCS (NCSDK)", "Edge TPU", "TVM", "FINN (PYNQ-Z1 FPGA)"}


def test_every_system_of_the_papers_is_listed_with_a_status():
    systems = load_systems()
    names = [s.name for s in systems.systems]
    assert MEASURED <= set(names) and len(names) == len(set(names))
    assert all(s.papers for s in systems.systems if s.name in MEASURED)


def test_every_framework_named_has_its_recipe():
    recipes = load_recipes()  # read now: frameworks whose recipes land later are checked once they are there
    missing = {(s.name, f) for s in load_systems().systems for f in s.frameworks if f not in recipes}
    assert not missing, f"systems.toml names frameworks without a recipe under images/: {sorted(missing)}"


def test_a_system_edgeorch_does_not_run_cites_where_its_facts_are_written():
    for s in load_systems().systems:
        if s.status != "runs":
            assert s.sources and all(u.startswith("https://") for u in s.sources), s.name


GOOD = """[papers]
p = "A paper"

[[system]]
name = "X"
kind = "framework"
papers = ["p"]
status = "runs"
frameworks = ["tflite"]
how = "as it is"
"""


@pytest.mark.parametrize("change, problem", [
    (('status = "runs"', 'status = "maybe"'), "status 'maybe' is not one of"),
    (('status = "runs"', 'status = "not run"\nsources = ["https://x.org"]'), "status 'not run' with frameworks"),
    (('status = "runs"', 'status = "via"'), "status 'via' cites no source"),
    (('papers = ["p"]', 'papers = ["q"]'), "papers ['q'] are not under [papers]"),
    (('kind = "framework"', 'kind = "board"'), "kind 'board' is not one of"),
    (('how = "as it is"\n', ''), "lacks the field 'how'"),
    (('status = "runs"', 'status = "via"\nsources = ["www.x.org"]'), "are not https:// addresses"),
])
def test_a_malformed_entry_is_refused_naming_the_file_and_the_system(tmp_path, change, problem):
    path = tmp_path / "systems.toml"
    path.write_text(GOOD.replace(*change))
    with pytest.raises(ConfigError) as e:
        load_systems(path)
    assert problem in e.value.message and f"{path}: system #1 (X)" in e.value.message and e.value.hint


def render(table) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_the_matrix_prints_each_system_its_status_and_its_note(tmp_path):
    text = render(report.systems_table(load_systems(), load_recipes()))
    for s in load_systems().systems:
        assert s.name in text
    assert "via: opencv (7)" in text  # DarkNet, the 7th
    assert "(7) a Darknet .cfg with its .weights beside it" in text and "opencv/opencv/pull/24785" in text
    assert "not run (14)" in text and "Papers:" in text


def test_a_framework_without_a_recipe_is_marked_and_markup_is_printed_as_text(tmp_path):
    path = tmp_path / "systems.toml"
    path.write_text(GOOD.replace('name = "X"', 'name = "[bold]X[/]"').replace('"tflite"', '"nosuch"')
                    .replace('"as it is"', '"reads [net] sections"'))
    text = render(report.systems_table(load_systems(path), load_recipes()))
    assert "[bold]X[/]" in text and "runs: nosuch (no recipe) (1)" in text and "(1) reads [net] sections" in text


def test_invoke_matrix_prints_the_systems_after_the_frameworks(monkeypatch):
    import invoke

    import tasks

    console = Console(width=200, record=True, color_system=None)
    monkeypatch.setattr(tasks, "console", console)
    tasks.matrix.body.__wrapped__(invoke.Context())  # the task itself, without the command log it begins
    text = console.export_text()
    assert text.index("Support matrix") < text.index("Systems of the seed papers")
    assert "opencv-dnn: " in text  # the matrix's models by format: OpenCV's own
