"""A tiny Darknet network, written here: its .cfg, its .weights in Darknet's layout, and what it computes (numpy), to
check OpenCV's Darknet importer reads both as Darknet means them."""

from pathlib import Path

import numpy as np

CFG = """[net]
# Testing: Darknet's and OpenCV's inference take the blob's batch, not the training batch below
batch = 64
width=8
height=6
channels=3

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=2
size=1
stride=1
pad=1
activation=linear
"""
SHAPE = (1, 3, 6, 8)  # what the [net] section declares: 1 x channels x height x width
EPS = 1e-6  # Darknet's batch-norm epsilon, as OpenCV's importer sets it


def parameters(seed: int = 0) -> dict[str, np.ndarray]:
    """The network's float32 parameters, seeded: a 3x3 conv of 4 filters with batch norm, a 1x1 conv of 2 filters."""
    rng = np.random.default_rng(seed)
    f = np.float32
    return {"bias1": rng.standard_normal(4).astype(f), "scale1": rng.standard_normal(4).astype(f),
            "mean1": rng.standard_normal(4).astype(f), "var1": (rng.random(4) + 0.5).astype(f),
            "kernel1": rng.standard_normal((4, 3, 3, 3)).astype(f),
            "bias2": rng.standard_normal(2).astype(f), "kernel2": rng.standard_normal((2, 4, 1, 1)).astype(f)}


def write_darknet_net(directory: Path, name: str = "tiny", seed: int = 0) -> Path:
    """`name`.cfg and `name`.weights in `directory`; the .cfg's path. The weights: major, minor, revision (int32),
    images seen (int64, as the version is 0.2), then per layer its biases, [batch-norm scales, means, variances],
    weights."""
    p = parameters(seed)
    cfg = Path(directory) / f"{name}.cfg"
    cfg.write_text(CFG)
    header = np.array([0, 2, 0], np.int32).tobytes() + np.array([0], np.int64).tobytes()
    body = [p[k] for k in ("bias1", "scale1", "mean1", "var1", "kernel1", "bias2", "kernel2")]
    cfg.with_suffix(".weights").write_bytes(header + b"".join(a.tobytes() for a in body))
    return cfg


def forward(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """What the network computes on NCHW `x`, as Darknet defines it: conv 3x3 pad 1, batch norm, leaky ReLU (0.1),
    max pool 2x2 stride 2 (padded by one at the bottom and right: Darknet's default padding is size - 1), conv 1x1."""
    p = parameters(seed)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # n, c, h, w, 3, 3
    y = np.einsum("nchwij,fcij->nfhw", windows, p["kernel1"])
    y = (y - p["mean1"][:, None, None]) / np.sqrt(p["var1"][:, None, None] + EPS) * p["scale1"][:, None, None] \
        + p["bias1"][:, None, None]
    y = np.where(y > 0, y, 0.1 * y)
    y = np.pad(y, ((0, 0), (0, 0), (0, 1), (0, 1)), constant_values=-np.inf)
    pooled = np.lib.stride_tricks.sliding_window_view(y, (2, 2), axis=(2, 3))[:, :, ::2, ::2].max(axis=(4, 5))
    return np.einsum("nchw,fc->nfhw", pooled, p["kernel2"][:, :, 0, 0]) + p["bias2"][:, None, None]
