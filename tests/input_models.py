"""Small ONNX models with the inputs users bring: dynamic dimensions, and several inputs of several dtypes."""

import contextlib
import io
import warnings
from pathlib import Path


def export_input_models(out: Path) -> Path:
    """torch.onnx.export, as edgeorch's zoo exports: `dynamic.onnx`, a conv net whose batch and spatial dims are
    dynamic, and `two.onnx`, y = x * n (x float32 [2, 4], n an int64 scalar)."""
    import torch

    class Conv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, image):
            return self.conv(image).mean(dim=(2, 3))

    class Scaled(torch.nn.Module):
        def forward(self, x, n):
            return x * n.to(torch.float32)

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(Conv(), (torch.zeros(1, 3, 8, 8),), str(out / "dynamic.onnx"), dynamo=False,
                          opset_version=13, input_names=["image"], output_names=["out"],
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}})
        torch.onnx.export(Scaled(), (torch.zeros(2, 4), torch.tensor(3)), str(out / "two.onnx"), dynamo=False,
                          opset_version=13, input_names=["x", "n"], output_names=["y"])
    return out
