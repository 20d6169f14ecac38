"""ExecuTorch without its runtime or compiler: the .pte and ETDump readers the board and the host use (checked
against flatbuffers written by the flatbuffers library), the refusals of a user's files, the operator a failed
lowering names, and the recipe."""

import numpy as np
import pytest

from edgeorch.arch import Arch
from edgeorch.bench.adapters import FrameworkMissing, executorch
from edgeorch.bench.adapters.executorch import etdump_events, program_facts, pte_inputs, read_program, run_events
from edgeorch.bench.signature import Declared, InputError, check_inputs, model_inputs
from edgeorch.errors import ModelError
from edgeorch.models import EXPORTERS, model_name
from edgeorch.models.export_executorch import conversion_error, unsupported_operator
from edgeorch.recipes import load_recipes

flatbuffers = pytest.importorskip("flatbuffers")

PTE = EXPORTERS["pte"]


# --- flatbuffers as ExecuTorch's schemas lay them out (schema/program.fbs, devtools/etdump/*.fbs) -------------------

def _table(b, fields):
    """A table of {slot: ("str", text) | ("tables", [offsets]) | ("ints", [int32]) | ("table", offset) |
    (fmt, number)}."""
    made = {}
    for slot, (kind, value) in fields.items():  # strings and vectors before the table that points at them
        if kind == "str":
            made[slot] = b.CreateString(value)
        elif kind in ("tables", "ints"):
            b.StartVector(4, len(value), 4)
            for item in reversed(value):
                b.PrependUOffsetTRelative(item) if kind == "tables" else b.PrependInt32(item)
            made[slot] = b.EndVector()
    b.StartObject(max(fields) + 1 if fields else 0)
    for slot, (kind, value) in fields.items():
        if kind in ("str", "tables", "ints"):
            b.PrependUOffsetTRelativeSlot(slot, made[slot], 0)
        elif kind == "table":
            b.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "i":
            b.PrependInt32Slot(slot, value, -12345)
        elif kind == "Q":
            b.PrependUint64Slot(slot, value, 0)
        elif kind == "B":
            b.PrependUint8Slot(slot, value, 0)
        elif kind == "b":
            b.PrependInt8Slot(slot, value, -1)
    return b.EndObject()


def program(*plans, identifier=b"ET12"):
    """A .pte's bytes: plans of (name, [(operator, overload)], [delegate ids]) and, optionally, [input]: the
    (sizes, scalar type) of a tensor input, or None for an Int."""
    b = flatbuffers.Builder(256)
    made = []
    for name, operators, delegates, *inputs in plans:
        ops = [_table(b, {0: ("str", op), 1: ("str", overload)}) for op, overload in operators]
        backends = [_table(b, {0: ("str", d)}) for d in delegates]
        values = [_table(b, {0: ("B", 2), 1: ("table", _table(b, {0: ("i", 7)}))}) if value is None else
                  _table(b, {0: ("B", 5), 1: ("table", _table(b, {0: ("b", value[1]), 2: ("ints", value[0])}))})
                  for value in (inputs[0] if inputs else [])]
        made.append(_table(b, {0: ("str", name), 2: ("tables", values), 3: ("ints", list(range(len(values)))),
                               6: ("tables", ops), 7: ("tables", backends)}))
    b.Finish(_table(b, {1: ("tables", made)}), file_identifier=identifier)
    return bytes(b.Output())


def etdump(*runs):
    """An ETDump's bytes as the runtime writes them, size-prefixed: runs of (name, [events]), an event
    (name, instruction, delegate id string, start, end), None for a field left out."""
    b = flatbuffers.Builder(256)
    made = []
    for run_name, events in runs:
        made_events = []
        for name, instruction, text, start, end in events:
            fields = {2: ("i", instruction), 6: ("Q", start), 7: ("Q", end)}
            if name is not None:
                fields[0] = ("str", name)
            if text is not None:
                fields[4] = ("str", text)
            made_events.append(_table(b, {0: ("table", _table(b, fields))}))
        made.append(_table(b, {0: ("str", run_name), 3: ("tables", made_events)}))
    b.FinishSizePrefixed(_table(b, {1: ("tables", made)}), file_identifier=b"ED00")
    return bytes(b.Output())


def _npy(tmp_path, array):
    path = tmp_path / "x.npy"
    np.save(path, array)
    return path


# --- the program reader, the board's and validate's --------------------------------------------------------------

def test_a_programs_kernels_and_delegates_are_read_per_method(tmp_path):
    path = tmp_path / "m.pte"
    path.write_bytes(program(("forward", [("aten::cumsum", "out"), ("aten::_local_scalar_dense", "")],
                              ["XnnpackBackend", "XnnpackBackend"]), ("init", [], [])))
    assert read_program(path) == {
        "forward": {"operators": ["aten::cumsum.out", "aten::_local_scalar_dense"],
                    "delegates": ["XnnpackBackend", "XnnpackBackend"], "inputs": []},
        "init": {"operators": [], "delegates": [], "inputs": []}}
    assert program_facts(read_program(path), "forward") == {
        "delegates": ["XnnpackBackend"], "kernels": ["aten::cumsum.out", "aten::_local_scalar_dense"]}
    with pytest.raises(ValueError, match="it has no method 'run' \\(its methods: forward, init\\)"):
        program_facts(read_program(path), "run")


def test_a_programs_inputs_are_read_as_the_runtime_declares_them(tmp_path):
    """What the host checks --input and --input-shape against before anything is sent: the board's adapter names a
    method's only input `input`, several input_0, input_1..."""
    path = tmp_path / "m.pte"
    path.write_bytes(program(("forward", [], [], [((1, 3, 224, 224), 6)])))
    assert model_inputs(path) == [Declared("input", (1, 3, 224, 224), "float32")]
    path.write_bytes(program(("forward", [], [], [((2, 8), 6), ((2,), 4)])))
    assert pte_inputs(path) == [Declared("input_0", (2, 8), "float32"), Declared("input_1", (2,), "int64")]
    with pytest.raises(InputError, match="input_1"):  # the board's own message, here
        check_inputs(path, files={"input_1": str(_npy(tmp_path, np.zeros((3,), np.int64)))})
    path.write_bytes(program(("forward", [], [], [((1, 4), 6), None])))  # an Int input: the board says what it is
    assert pte_inputs(path) is None and check_inputs(path) is None
    path.write_bytes(program(("forward", [], [], [((1, 4), 9)])))  # a scalar type edgeorch does not feed
    assert pte_inputs(path) is None


def test_a_user_pte_lowered_to_xnnpack_or_to_nothing_is_taken(tmp_path):
    for delegates in (["XnnpackBackend"], []):
        path = tmp_path / "net.pte"
        path.write_bytes(program(("forward", [("aten::add", "out")], delegates)))
        assert model_name(str(path), "pte") == "net"


@pytest.mark.parametrize(("name", "data", "error"), [
    ("net.onnx", b"\x08\x07", "is not a pte model: its name does not end in .pte"),
    ("net.pte", b"", "model file .*net.pte is empty"),
    ("net.pte", b"\x18\x00\x00\x00TFL3" + bytes(64), "pte: not an ExecuTorch program file: bytes 4-8 are "
                                                      "b'TFL3', not the .pte identifier ET12"),
    ("net.pte", b"PK\x03\x04" + bytes(60), "bytes 4-8 are b'\\\\x00\\\\x00\\\\x00\\\\x00', not the .pte identifier"),
    ("net.pte", b"ET12", "shorter than a flatbuffer's 8-byte header"),
    ("net.pte", b"\x20\x00\x00\x00ET09" + bytes(64), "an ExecuTorch program of format ET09, and this runtime reads "
                                                      "ET12: export it again"),
    ("net.pte", b"\xff\xff\xff\x00ET12" + bytes(64), "its flatbuffer does not parse|outside its 72 bytes"),
])
def test_a_file_that_is_not_a_pte_is_refused_naming_the_file_and_the_fix(tmp_path, name, data, error):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ModelError, match=error) as found:
        PTE.validate(path)
    assert str(path) in str(found.value) and found.value.hint


def test_a_program_without_forward_or_for_another_backend_is_refused(tmp_path):
    path = tmp_path / "net.pte"
    path.write_bytes(program(("encode", [], [])))
    with pytest.raises(ModelError, match="it has no method 'forward' \\(its methods: encode\\)"):
        PTE.validate(path)
    path.write_bytes(program(("forward", [], ["XnnpackBackend", "CoreMLBackend"])))
    with pytest.raises(ModelError, match="lowered to CoreMLBackend, which the board's ExecuTorch .* does not run") as e:
        PTE.validate(path)
    assert "pytorch or onnxruntime" in e.value.hint
    with pytest.raises(ModelError, match="does not exist"):
        PTE.validate(tmp_path / "gone.pte")


# --- the ETDump reader: one row per operator, the containers left out ---------------------------------------------

def test_an_etdump_gives_each_operator_of_each_run_after_the_warm_up():
    load = ("Default", [("Method::init", 0, None, 0, 900), ("Program::load_method", 0, None, 0, 1000)])

    def run(scale):
        return ("Execute", [(None, 0, "Convolution (NHWC, F32) IGEMM #1", 0, 3000 * scale),
                            (None, 0, "Max Pooling (NHWC, F32) #1", 3000, 3000 + 1000 * scale),
                            ("DELEGATE_CALL", 0, None, 0, 4100 * scale),
                            ("native_call_argmax.out", 1, None, 5000, 5000 + 70 * scale),
                            ("OPERATOR_CALL", 1, None, 5000, 5000 + 90 * scale),
                            ("Method::execute", -1, None, 0, 6000 * scale)])

    data = etdump(load, run(100), run(1), run(2))
    assert etdump_events(data, skip_runs=1) == [
        ("Convolution (NHWC, F32) IGEMM", "Convolution (NHWC, F32) IGEMM #1", 3000),
        ("Max Pooling (NHWC, F32)", "Max Pooling (NHWC, F32) #1", 1000),
        ("argmax.out", "argmax.out (instruction 1)", 70),
        ("Convolution (NHWC, F32) IGEMM", "Convolution (NHWC, F32) IGEMM #1", 6000),
        ("Max Pooling (NHWC, F32)", "Max Pooling (NHWC, F32) #1", 2000),
        ("argmax.out", "argmax.out (instruction 1)", 140)]
    assert len(etdump_events(data)) == 9  # the warm-up run too; never the load's events
    with pytest.raises(ValueError, match="not an ETDump"):
        etdump_events(program(("forward", [], [])))


def test_operators_of_several_delegates_are_told_apart_and_a_silent_delegate_is_its_call():
    events = [(None, 0, "Transpose (ND, X32) #1", 10), ("DELEGATE_CALL", 0, None, 12),
              ("native_call_cumsum.out", 1, None, 5), ("OPERATOR_CALL", 1, None, 6),
              (None, 2, "Transpose (ND, X32) #1", 20), ("DELEGATE_CALL", 2, None, 21),
              ("DELEGATE_CALL", 3, None, 40), ("Method::execute", -1, None, 99)]
    assert run_events([(n, i, -1, t, ns) for n, i, t, ns in events]) == [
        ("Transpose (ND, X32)", "Transpose (ND, X32) #1 (delegate at instruction 0)", 10),
        ("cumsum.out", "cumsum.out (instruction 1)", 5),
        ("Transpose (ND, X32)", "Transpose (ND, X32) #1 (delegate at instruction 2)", 20),
        ("DELEGATE_CALL", "delegate at instruction 3", 40)]
    assert run_events([(None, 0, 7, None, 3), ("DELEGATE_CALL", 0, -1, None, 4)]) == [
        ("delegate operator 7", "delegate operator 7", 3)]


# --- the lowering's errors and the adapter without its runtime -----------------------------------------------------

# What to_edge and to_executorch raise (executorch 1.5.1), cut short.
NOT_CORE = ("\nOperator torch._ops.aten.median.dim is not in Core ATen opset (https://pytorch.org/docs/stable/"
            "torch.compiler_ir.html#core-aten-ir).\"\nThere are a few things to try:\n1. You can proceed with ...")
NO_OUT = "Missing out variants: {'aten::_unique2', 'aten::histc'}"


def test_a_lowering_that_refuses_an_operator_names_it_and_the_frameworks_that_run_the_model():
    assert unsupported_operator(NOT_CORE) == "aten.median.dim"
    assert unsupported_operator(NO_OUT) == "aten::_unique2, aten::histc"
    assert unsupported_operator("Failed to map a given dim_order: [1, 0] to a torch.memory_format") is None
    error = conversion_error("resnet18", RuntimeError(NOT_CORE))
    assert "ExecuTorch cannot lower resnet18: it uses aten.median.dim" in error.message
    assert "pytorch or onnxruntime" in error.hint
    other = conversion_error("resnet18", AssertionError("Failed to map a\ngiven dim_order"))
    assert "lowering resnet18 to ExecuTorch failed: AssertionError: Failed to map a given dim_order" in other.message


def test_a_board_without_the_runtime_is_told_each_import_that_failed(monkeypatch):
    monkeypatch.setattr(executorch, "EXTENSIONS", ("edgeorch_no_such_runtime_a", "edgeorch_no_such_runtime_b"))
    with pytest.raises(FrameworkMissing, match="runtime does not import \\(No module named "
                                               "'edgeorch_no_such_runtime_a'; No module named 'edgeorch_no_such"):
        executorch._extension()


# --- the recipe ----------------------------------------------------------------------------------------------------

def test_the_recipe_pairs_each_executorch_with_the_torch_its_runtime_links():
    recipe = load_recipes()["executorch"]
    assert recipe.model_format == "pte" and PTE.suffix == ".pte" and type(PTE).__name__ == "ExecuTorchExporter"
    assert set(recipe.arches) == {Arch.ARM64, Arch.AMD64}
    pins = {arch: dict(p.split("==") for p in recipe.packages_for(recipe.build_for(arch, ("3.11",), "bookworm"),
                                                                   arch))
            for arch in recipe.arches}
    assert pins[Arch.AMD64] == {"executorch": "1.5.1", "torch": "2.13.0", "typing-extensions": "4.16.0"}
    assert pins[Arch.ARM64] == {"executorch": "1.1.0", "torch": "2.10.0", "typing-extensions": "4.16.0"}
    for arch in recipe.arches:
        for python in ("3.10", "3.13"):
            assert recipe.why_not(arch, python, "trixie") is None
        assert "no cp39 wheel" in recipe.why_not(arch, "3.9", "bullseye")
    assert "no armv7l wheel of executorch" in recipe.why_not(Arch.ARMV7)
