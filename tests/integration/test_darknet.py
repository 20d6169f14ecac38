"""A Darknet network through OpenCV's Darknet importer for real: the tiny net of tests/darknet_net.py, read by cv2 (in
this Python where it has OpenCV 4, else skipped) and computing what Darknet defines; then benchmarked on the x86 sim
board in both modes, its .weights carried beside its .cfg into the container."""

import json

import numpy as np
import pytest

from ..darknet_net import SHAPE, forward, write_darknet_net
from .conftest import invoke
from .test_pipeline import run_dir_of


def test_opencv_reads_the_cfg_and_weights_as_darknet_means_them(tmp_path):
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2.dnn, "readNetFromDarknet"):
        pytest.skip(f"OpenCV {cv2.__version__} has no Darknet importer")
    from edgeorch.bench.adapters.opencv import OpenCV

    cfg = write_darknet_net(tmp_path)
    adapter = OpenCV()
    adapter.load(str(cfg), 1)
    for shape in (SHAPE, (2, 3, 12, 16)):  # the declared shape, and another that cv2.dnn reshapes to
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        adapter.feed([x])
        adapter.infer()
        (out,) = adapter.outputs()
        np.testing.assert_allclose(out, forward(x), rtol=1e-4, atol=1e-4)


def test_a_darknet_network_runs_in_docker_and_bare_on_the_x86_board(fleet, tmp_path):
    cfg = write_darknet_net(tmp_path)
    r = invoke("bench", "--host", "x86", "--framework", "opencv", "--model", str(cfg), "--mode", "both",
               "--iterations", "2", "--warmup", "0", "--repeat", "1", "--min-time", "0")
    raws = sorted((run_dir_of(r.stdout) / "raw" / "x86").glob("opencv-tiny-*.json"))
    docs = [json.loads(p.read_text()) for p in raws]
    assert sorted(d["run"]["mode"] for d in docs) == ["bare", "docker"]
    for doc in docs:
        assert doc["status"] == "ok" and doc["model"]["inputs"][0]["shape"] == list(SHAPE)
        assert doc["model"]["outputs"] == [{"name": "conv_2"}]
