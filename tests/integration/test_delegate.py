"""An external TFLite delegate for real: a library compiled here that implements TFLite's external delegate interface
(tflite_plugin_create_delegate) and takes no node, loaded by the adapter through the runtime's own load_delegate and
handed to its Interpreter, which calls the delegate's Prepare and runs the graph on the CPU.

What only a board with the accelerator shows, and no test here: that libedgetpu1-std's library loads in the
framework images (it needs libusb-1.0, which the images do not install: bare and native modes take the board's), that
the Edge TPU runs a model compiled by edgetpu_compiler, that the USB stick, which re-enumerates once its firmware is
loaded, is still reachable by a container created before, and that the login's groups open /dev/apex_0."""

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from edgeorch.bench.adapters.base import OptionError
from edgeorch.bench.adapters.tflite import LiteRT, TFLite

DELEGATE = r"""
#include <stdint.h>
#include <stdlib.h>
typedef struct Delegate {  /* TfLiteDelegate of tensorflow/lite/core/c/common.h */
  void *data_;
  int (*Prepare)(void *context, struct Delegate *delegate);
  void *CopyFromBufferHandle, *CopyToBufferHandle, *FreeBufferHandle;
  int64_t flags;
  void *opaque_delegate_builder;
} Delegate;
int edgeorch_prepared = 0;
static int prepare(void *context, Delegate *delegate) { (void)context; (void)delegate; edgeorch_prepared++; return 0; }
Delegate *tflite_plugin_create_delegate(char **keys, char **values, size_t n, void (*report)(const char *)) {
  (void)keys; (void)values; (void)n;
  if (getenv("EDGEORCH_TEST_NO_ACCELERATOR")) { report("no accelerator found"); return NULL; }
  Delegate *d = calloc(1, sizeof *d);
  d->Prepare = prepare;
  return d;
}
void tflite_plugin_destroy_delegate(Delegate *d) { free(d); }
"""


class TFLiteInTensorFlow(TFLite):
    """TFLite's interpreter as TensorFlow ships it: the interpreter.py that tflite-runtime is built from."""
    package = "tensorflow.lite.python"


RUNTIMES = {"tensorflow": TFLiteInTensorFlow, "ai_edge_litert": LiteRT, "tflite_runtime": TFLite}


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to build the test delegate")
    out = tmp_path_factory.mktemp("delegate")
    (out / "nop.c").write_text(DELEGATE)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(out / "libnop_delegate.so"), str(out / "nop.c")], check=True,
                   timeout=120)
    subprocess.run([cc, "-shared", "-fPIC", "-x", "c", "-o", str(out / "libnot_a_delegate.so"), "-"],
                   input="int x;\n", text=True, check=True, timeout=120)
    return out / "libnop_delegate.so"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The builtin tiny net (built with TensorFlow, then cached)."""
    pytest.importorskip("tensorflow")
    from edgeorch.models import builtin

    path, _ = builtin("tiny", tmp_path_factory.mktemp("cache"), lambda _msg: None)
    return str(path)


@pytest.fixture(params=list(RUNTIMES))
def adapter(request):
    pytest.importorskip(request.param)
    return RUNTIMES[request.param]


def test_the_delegate_prepares_the_graph_and_the_outputs_stay_the_cpus(adapter, library, model):
    plain = adapter()
    plain.load(model, 1)
    plain.prepare()
    plain.infer()
    prepared = ctypes.c_int.in_dll(ctypes.CDLL(str(library)), "edgeorch_prepared")
    before = prepared.value
    delegated = adapter({"delegate": str(library)})
    delegated.load(model, 1)
    assert prepared.value == before + 1  # the interpreter handed the graph to the delegate
    delegated.prepare()
    delegated.infer()
    np.testing.assert_array_equal(delegated.outputs()[0], plain.outputs()[0])
    assert delegated.info(1)["options"]["delegate_file"] == str(library)


def test_a_library_that_is_no_delegate_is_refused(adapter, library):
    with pytest.raises(OptionError, match="is not an external TFLite delegate: .*tflite_plugin_create_delegate"):
        adapter({"delegate": str(library.with_name("libnot_a_delegate.so"))})


def test_a_delegate_that_finds_no_accelerator_is_refused_with_its_message(adapter, library, monkeypatch):
    monkeypatch.setenv("EDGEORCH_TEST_NO_ACCELERATOR", "1")
    with pytest.raises(OptionError, match="does not load: Failed to load delegate from .* no accelerator found"):
        adapter({"delegate": str(library)})
