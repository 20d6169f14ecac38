"""The networks every framework is compared on: defined once in PyTorch, weighted once from a seed.

The exporters beside this module convert them into each framework's format."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

from edgeorch.errors import ModelError

SEED = 0


@dataclass(frozen=True, kw_only=True)
class Network:
    name: str
    input_shape: tuple[int, ...]  # NCHW float32, the one shape every framework runs
    published_params: float
    published_macs: float  # multiply-accumulates for one input_shape image
    description: str


# Parameters and MACs as published for the torchvision definitions these follow: the "Params" and "GFLOPS" columns
# of https://pytorch.org/vision/stable/models.html (its GFLOPS are multiply-accumulates, e.g. ResNet-50 4.09).
# The papers agree where they define the same network: MobileNetV2 (Sandler et al. 2018, Table 4: 300M MAdds),
# GoogLeNet (Szegedy et al. 2014: 1.5 billion multiply-adds), VGG-16 (Simonyan & Zisserman 2014, Table 2: 138M).
# ResNet-50's 4.1e9 is v1.5 (the stride on the 3x3 conv); the paper's v1 has 3.8e9.
NETWORKS: dict[str, Network] = {
    n.name: n
    for n in (
        Network(
            name="squeezenet1_1",
            input_shape=(1, 3, 224, 224),
            published_params=1.24e6,
            published_macs=0.35e9,
            description="SqueezeNet 1.1: fire modules, a 1x1 conv classifier and global average pooling",
        ),
        Network(
            name="googlenet",
            input_shape=(1, 3, 224, 224),
            published_params=6.6e6,
            published_macs=1.5e9,
            description="GoogLeNet (Inception v1) with BatchNorm as torchvision, without the auxiliary classifiers",
        ),
        Network(
            name="resnet18",
            input_shape=(1, 3, 224, 224),
            published_params=11.7e6,
            published_macs=1.8e9,
            description="ResNet-18: basic residual blocks with BatchNorm",
        ),
        Network(
            name="resnet50",
            input_shape=(1, 3, 224, 224),
            published_params=25.6e6,
            published_macs=4.1e9,
            description="ResNet-50 v1.5 (torchvision's): bottleneck blocks, stride on the 3x3 conv",
        ),
        Network(
            name="mobilenet_v2",
            input_shape=(1, 3, 224, 224),
            published_params=3.5e6,
            published_macs=0.3e9,
            description="MobileNet-v2, width 1.0: inverted residuals, depthwise convs, ReLU6",
        ),
        Network(
            name="alexnet",
            input_shape=(1, 3, 224, 224),
            published_params=61.1e6,
            published_macs=0.71e9,
            description="AlexNet as torchvision (the one-GPU variant of 'One weird trick', 64-192-384-256-256 convs)",
        ),
        Network(
            name="vgg16",
            input_shape=(1, 3, 224, 224),
            published_params=138.4e6,
            published_macs=15.5e9,
            description="VGG-16 (configuration D), no BatchNorm",
        ),
    )
}


def build(name: str):  # -> torch.nn.Module
    """Return network `name` in eval mode with weights drawn from SEED: two builds in a process are bit-identical."""
    # Calibration sums floats in an order that depends on the CPU and the thread count, so another machine's build
    # can differ in the last bits: every framework must take its weights from one build (its ONNX export).
    network = lookup(name)
    torch = import_torch(f"build {name}")
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # leave the caller's random stream as it was
        torch.manual_seed(SEED)
        model = _architectures()[name]().eval()
        _calibrate(model, torch.randn(4, *network.input_shape[1:]))
    return model


def count_params(module) -> int:
    """Number of trainable parameters (weights and biases; not BatchNorm running statistics)."""
    return sum(p.numel() for p in module.parameters())


def count_macs(module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on `input_shape`: Conv2d (grouped too) and Linear layers only."""
    # Pooling, activations, BatchNorm, additions and biases are left out, as in the published figures.
    torch = import_torch("count MACs")
    from torch import nn

    macs = 0

    def hook(layer, _inputs, output) -> None:
        nonlocal macs
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            macs += output.numel() * (layer.in_channels // layer.groups) * kh * kw
        else:
            macs += output.numel() * layer.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        with torch.no_grad():
            module(torch.zeros(input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return macs


def reference_input(network: Network | str, seed: int = SEED, batch: int = 1):  # -> numpy.ndarray
    """The one input every framework gets: float32 of the network's input_shape (with `batch` images),
    standard normal from `seed`."""
    import numpy as np

    network = lookup(network if isinstance(network, str) else network.name, batch)
    # Zero mean and unit variance is what a mean/std-normalized image looks like to the first layer.
    return np.random.default_rng(seed).standard_normal(network.input_shape, dtype=np.float32)


def reference_output(name: str, batch: int = 1):  # -> numpy.ndarray
    """PyTorch's output for reference_input: what every framework's output is compared with."""
    torch = import_torch(f"compute the reference output of {name}")
    with torch.no_grad():
        return build(name)(torch.from_numpy(reference_input(name, batch=batch))).numpy()


def _calibrate(model, batch) -> None:
    """Set what training would have: BatchNorm statistics and classifier scores fitted to one calibration batch."""
    from torch import nn

    # With the default statistics (mean 0, variance 1) BatchNorm normalizes nothing and each layer's scale is left
    # to the random weights: GoogLeNet's std-0.01 init shrinks the activations to ~1e-11 by its last layer (so every
    # input gives the same output), ResNet-50's grow 50-fold. Statistics of inputs like reference_input's keep every
    # layer near unit variance, as in a trained network.
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: after one batch, exactly that batch's statistics
        m.train()
    classifier = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)][-1]
    seen = []
    handle = classifier.register_forward_hook(lambda _m, _in, out: seen.append(out.clone()))  # a ReLU may follow
    try:
        model(batch)
    finally:
        handle.remove()
        for m in norms:
            m.momentum = 0.1  # torchvision's, so that each reads as an ordinary BatchNorm2d
            m.eval()

    # Random weights give nearly every input the same class: the features' common mean, through the classifier,
    # outweighs what varies with the input. Scores centred per class on the batch follow the input, so a
    # cross-framework top-1 check means something; scaled to unit variance, they compare across networks.
    out = seen[0]
    dims = [d for d in range(out.dim()) if d != 1]  # all but the class
    mean = out.mean(dims)
    # SqueezeNet's classifier is a conv that ReLU and average pooling follow: unless every class has the same spread
    # over the positions, the class with the largest weights wins. A linear classifier has no positions to measure
    # a spread per class over, so one scale serves all.
    std = out.std(dims) if out.dim() > 2 else (out - mean).std().expand_as(mean)
    classifier.weight /= std.view(-1, *[1] * (classifier.weight.dim() - 1))
    classifier.bias.copy_((classifier.bias - mean) / std)


@functools.cache
def _architectures() -> dict[str, Callable]:
    """Constructors of the networks in plain torch.nn, layer for layer as torchvision defines them (and inits them)."""
    import torch
    from torch import nn

    class Add(nn.Module):
        """act(body(x) + shortcut(x)), the shortcut by default the identity: a residual block."""

        def __init__(self, body, shortcut=None, act=None):
            super().__init__()
            self.body = body
            self.shortcut = nn.Identity() if shortcut is None else shortcut
            self.act = nn.Identity() if act is None else act

        def forward(self, x):
            return self.act(self.body(x) + self.shortcut(x))

    class Concat(nn.Module):
        """The branches' outputs stacked along the channels (Inception, Fire)."""

        def __init__(self, *branches):
            super().__init__()
            self.branches = nn.ModuleList(branches)

        def forward(self, x):
            return torch.cat([branch(x) for branch in self.branches], 1)

    def relu():
        return nn.ReLU(inplace=True)

    def conv_bn(cin, cout, k, stride=1, *, groups=1, act=nn.ReLU, eps=1e-5):
        conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False)
        return nn.Sequential(conv, nn.BatchNorm2d(cout, eps=eps), *([act(inplace=True)] if act else []))

    def init(model, conv, linear=None):
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                conv(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and linear:
                linear(m.weight)
                nn.init.zeros_(m.bias)
        return model

    fan_out = functools.partial(nn.init.kaiming_normal_, mode="fan_out", nonlinearity="relu")
    small = functools.partial(nn.init.normal_, std=0.01)

    def resnet(counts, bottleneck):
        layers, cin = [conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)], 64
        for stage, (planes, n) in enumerate(zip((64, 128, 256, 512), counts)):
            for i in range(n):
                stride, cout = (2 if stage and not i else 1), planes * (4 if bottleneck else 1)
                if bottleneck:  # the stride on the 3x3 conv, not the first 1x1: ResNet v1.5, as torchvision
                    convs = [conv_bn(cin, planes, 1), conv_bn(planes, planes, 3, stride)]
                else:
                    convs = [conv_bn(cin, planes, 3, stride)]
                convs.append(conv_bn(planes, cout, 1 if bottleneck else 3, act=None))  # the ReLU comes after the sum
                shortcut = conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else None
                layers.append(Add(nn.Sequential(*convs), shortcut, relu()))
                cin = cout
        model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1000))
        return init(model, fan_out)  # the fc keeps PyTorch's default init, as in torchvision

    def mobilenet_v2():
        layers, cin = [conv_bn(3, 32, 3, 2, act=nn.ReLU6)], 32
        # expansion t, channels c, repeats n, first stride s: Table 2 of the paper
        rows = (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)
        for t, c, n, s in rows:
            for i in range(n):
                stride, hidden = (s if i == 0 else 1), cin * t
                body = nn.Sequential(
                    *([conv_bn(cin, hidden, 1, act=nn.ReLU6)] if t != 1 else []),
                    conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),  # depthwise
                    conv_bn(hidden, c, 1, act=None),  # the linear bottleneck: no activation
                )
                layers.append(Add(body) if stride == 1 and cin == c else body)
                cin = c
        head = [conv_bn(cin, 1280, 1, act=nn.ReLU6), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2)]
        return init(nn.Sequential(*layers, *head, nn.Linear(1280, 1000)), fan_out, small)

    def googlenet():
        def conv(cin, cout, k, stride=1):
            return conv_bn(cin, cout, k, stride, eps=0.001)

        def inception(cin, c1, c3red, c3, c5red, c5, proj):
            return Concat(
                conv(cin, c1, 1),
                nn.Sequential(conv(cin, c3red, 1), conv(c3red, c3, 3)),
                # torchvision's "5x5" branch has a 3x3 conv (a slip kept for its weights' sake); so this one has too
                nn.Sequential(conv(cin, c5red, 1), conv(c5red, c5, 3)),
                nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), conv(cin, proj, 1)),
            )

        def pool(k=3):
            return nn.MaxPool2d(k, 2, ceil_mode=True)

        model = nn.Sequential(
            *(conv(3, 64, 7, 2), pool(), conv(64, 64, 1), conv(64, 192, 3), pool()),
            inception(192, 64, 96, 128, 16, 32, 32),
            inception(256, 128, 128, 192, 32, 96, 64),
            pool(),
            inception(480, 192, 96, 208, 16, 48, 64),
            inception(512, 160, 112, 224, 24, 64, 64),
            inception(512, 128, 128, 256, 24, 64, 64),
            inception(512, 112, 144, 288, 32, 64, 64),
            inception(528, 256, 160, 320, 32, 128, 128),
            pool(2),
            inception(832, 256, 160, 320, 32, 128, 128),
            inception(832, 384, 192, 384, 48, 128, 128),
            *(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(1024, 1000)),
        )
        for m in model.modules():  # the fc's bias keeps PyTorch's default init, as in torchvision
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.01, a=-2, b=2)
        return model

    def squeezenet1_1():
        def fire(cin, squeeze, expand):
            expand1, expand3 = nn.Conv2d(squeeze, expand, 1), nn.Conv2d(squeeze, expand, 3, padding=1)
            branches = Concat(nn.Sequential(expand1, relu()), nn.Sequential(expand3, relu()))
            return nn.Sequential(nn.Conv2d(cin, squeeze, 1), relu(), branches)

        def pool():
            return nn.MaxPool2d(3, 2, ceil_mode=True)

        classifier = nn.Conv2d(512, 1000, 1)
        model = nn.Sequential(
            *(nn.Conv2d(3, 64, 3, 2), relu(), pool()),
            *(fire(64, 16, 64), fire(128, 16, 64), pool()),
            *(fire(128, 32, 128), fire(256, 32, 128), pool()),
            *(fire(256, 48, 192), fire(384, 48, 192), fire(384, 64, 256), fire(512, 64, 256)),
            *(nn.Dropout(0.5), classifier, relu(), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        )
        init(model, nn.init.kaiming_uniform_)
        small(classifier.weight)
        return model

    def alexnet():  # PyTorch's default init, as in torchvision
        return nn.Sequential(
            *(nn.Conv2d(3, 64, 11, 4, 2), relu(), nn.MaxPool2d(3, 2)),
            *(nn.Conv2d(64, 192, 5, padding=2), relu(), nn.MaxPool2d(3, 2)),
            *(nn.Conv2d(192, 384, 3, padding=1), relu()),
            *(nn.Conv2d(384, 256, 3, padding=1), relu()),
            *(nn.Conv2d(256, 256, 3, padding=1), relu(), nn.MaxPool2d(3, 2)),
            *(nn.AdaptiveAvgPool2d(6), nn.Flatten()),
            *(nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), relu()),
            *(nn.Dropout(), nn.Linear(4096, 4096), relu()),
            nn.Linear(4096, 1000),
        )

    def vgg16():
        layers, cin = [], 3
        for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), relu()]
                cin = v
        model = nn.Sequential(
            *layers,
            *(nn.AdaptiveAvgPool2d(7), nn.Flatten()),
            *(nn.Linear(512 * 7 * 7, 4096), relu(), nn.Dropout()),
            *(nn.Linear(4096, 4096), relu(), nn.Dropout()),
            nn.Linear(4096, 1000),
        )
        return init(model, fan_out, small)

    return {
        "squeezenet1_1": squeezenet1_1,
        "googlenet": googlenet,
        "resnet18": lambda: resnet((2, 2, 2, 2), bottleneck=False),
        "resnet50": lambda: resnet((3, 4, 6, 3), bottleneck=True),
        "mobilenet_v2": mobilenet_v2,
        "alexnet": alexnet,
        "vgg16": vgg16,
    }


def file_stem(name: str, batch: int) -> str:
    """How an export's file name starts: the network, and its batch when that is not 1."""
    return name if batch == 1 else f"{name}_b{batch}"


def lookup(name: str, batch: int = 1) -> Network:
    """The network `name`, taking `batch` images per inference; a ModelError naming the known ones if unknown."""
    if name not in NETWORKS:
        raise ModelError(f"unknown network {name!r}", hint=f"use one of {', '.join(NETWORKS)}")
    if not isinstance(batch, int) or batch < 1:
        raise ModelError(f"batch {batch!r} is not a number of images", hint="use a batch of 1 or more")
    network = NETWORKS[name]
    return dataclasses.replace(network, input_shape=(batch, *network.input_shape[1:]))


def import_torch(doing: str):  # -> the torch module
    """The torch module, or a ModelError saying that PyTorch is needed to `doing`."""
    try:
        import torch
    except ImportError as exc:
        raise ModelError(
            f"cannot {doing}: PyTorch is not installed ({exc})",
            hint="install the models extra (pip install -e '.[models]')",
        ) from exc
    return torch
