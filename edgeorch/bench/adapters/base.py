"""What every adapter shares: its errors, option checking, and the inputs it is fed (seeded data or the user's
files, shaped as edgeorch.bench.signature resolved them).

An adapter is a class with `name`, and: info(threads) -> dict; load(path, threads); inputs() -> [Declared]
(after load); reshape({name: shape}) to fix every input's shape (after load, still timed as loading);
describe() -> {"inputs", "outputs"}; feed([array per input]); infer(); outputs() -> [array]; and, in a separate
profiling pass after feed (never inside the timed runs), profile(runs) -> [{"op_type", "op_name", "time_ns"}].
"""

import numpy as np

from ..signature import InputError, resolve

# Integer inputs are seeded in [0, INT_HIGH): they are most often indices, token ids or lengths, which the
# full range of the dtype would put out of bounds (a gather past the end fails, or reads garbage).
INT_HIGH = 10


class ModelLoadError(Exception):
    """The model file could not be read by the framework."""


class FrameworkMissing(Exception):
    """The framework is not importable in this environment."""


class OptionError(Exception):
    """An --option the adapter does not know, or a value it does not take."""


class NotProfiled(Exception):
    """The runtime exposes no per-operator times to Python; the message says so, and which tool does."""


class Adapter:
    """Defaults for the optional steps: most frameworks take any shape at feed time and any array as it is."""

    name = ""
    OPTIONS = {}  # --option KEY -> its values, or a Rule; the orchestrator checks them too, before anything runs

    def reshape(self, shapes):
        """Fix each input's shape before the first inference (TFLite, Caffe, TensorRT need it)."""

    def profile(self, runs):
        """The mean time per inference of each operator over `runs` inferences with the runtime's own profiler on:
        [{"op_type": str, "op_name": str, "time_ns": float}], in execution order where the runtime tells it.
        Called after load, reshape and feed, in a profiling pass of its own (a profiler slows what it watches);
        the adapter can still infer() afterwards. NotProfiled where the runtime has no per-operator times."""
        raise NotProfiled(f"{self.name or type(self).__name__}: edgeorch has no per-operator profile for this "
                          "framework")

    def convert(self, name, array):
        """The user's array for input `name` as the model takes it (TFLite quantizes a float one)."""
        return array

    def prepare(self, seed=0, first=None):
        """After load: every input as declared, fed seeded data, or `first` for the first one (scripts and tests;
        the entrypoint takes the same steps with the user's shapes and files)."""
        resolved = resolve(self.inputs())
        self.reshape({i["name"]: tuple(i["shape"]) for i in resolved})
        data, _ = arrays(self, resolved, seed)
        if first is not None and resolved:
            given = self.convert(resolved[0]["name"], first)
            want = resolved[0]
            if list(given.shape) != want["shape"] or given.dtype != np.dtype(want["dtype"]):
                raise InputError(f"the given input is {given.dtype}{list(given.shape)}, the model takes "
                                 f"{want['dtype']}{want['shape']}")
            data[0] = given
        self.feed(data)


def profile_runs(runs):
    """`runs` as a positive int: a profile is a mean over at least one inference."""
    if isinstance(runs, bool) or int(runs) != runs or runs < 1:
        raise ValueError(f"profile runs must be a positive integer, not {runs!r}")
    return int(runs)


def mean_per_op(events, runs):
    """[{"op_type", "op_name", "time_ns"}] from (op_type, op_name, ns) events recorded over `runs` inferences: each
    operator's total divided by `runs` (an operator run twice in one inference counts twice, one run in only some
    inferences is averaged over all of them), in the order the operators were first seen."""
    runs = profile_runs(runs)
    totals = {}
    for op_type, op_name, ns in events:
        key = (str(op_type), str(op_name))
        totals[key] = totals.get(key, 0.0) + float(ns)
    return [{"op_type": op_type, "op_name": op_name, "time_ns": total / runs}
            for (op_type, op_name), total in totals.items()]


class Rule:
    """The values of an option that names something of the board's own (a library's path) rather than one of a
    list: `refuse(value)` says why a value is not one (None when it is), `takes` what it takes, for a hint."""

    def __init__(self, takes, refuse):
        self.takes, self.refuse = takes, refuse


def takes(values):
    """What an option takes, in words: on|off, or a Rule's `takes`."""
    return values.takes if isinstance(values, Rule) else "|".join(values)


def refusal(key, value, values):
    """Why `value` is not one that option `key` takes (its `values`: a tuple, or a Rule), or None."""
    if isinstance(values, Rule):
        why = values.refuse(value)
        return None if why is None else f"option {key}={value!r}: {why}"
    return None if value in values else f"option {key}={value!r} is not one of {list(values)}"


def check_options(given, **allowed):
    """The adapter options (--option KEY=VALUE) after checking each against what the adapter knows."""
    given = dict(given or {})
    for key, value in given.items():
        if key not in allowed:
            raise OptionError(f"unknown option {key!r}; this framework knows {sorted(allowed) or 'none'}")
        why = refusal(key, value, allowed[key])
        if why:
            raise OptionError(why)
    return given


def seeded(shape, dtype, rng):
    """A seeded input of the given shape and dtype, and the values it holds in words (a failed run names them):
    floats standard normal, integers in [0, INT_HIGH), bools 0/1."""
    dtype = np.dtype(dtype)
    shape = tuple(int(d) for d in shape)
    if dtype.kind == "f":
        return np.asarray(rng.standard_normal(shape), dtype=dtype), "standard normal floats"
    if dtype.kind in "iu":
        return np.asarray(rng.integers(0, INT_HIGH, size=shape), dtype=dtype), f"integers in [0, {INT_HIGH})"
    if dtype.kind == "b":
        return np.asarray(rng.integers(0, 2, size=shape), dtype=bool), "booleans, False or True"
    raise ModelLoadError(f"input dtype {dtype} is not supported")


def arrays(adapter, resolved, seed, load=np.load):
    """One array per resolved input ({name, shape, dtype, source}), in order: seeded from `seed`, or the user's
    file, converted by the adapter and checked against the model's dtype. With them, the inputs made up (seeded):
    [{name, dtype, shape, range}], for the error of a run that fails on them."""
    rng = np.random.default_rng(seed)
    out, made_up = [], []
    for item in resolved:
        if item["source"] != "file":
            array, values = seeded(item["shape"], item["dtype"], rng)
            out.append(array)
            made_up.append({"name": item["name"], "dtype": array.dtype.name, "shape": list(array.shape),
                            "range": values})
            continue
        array = adapter.convert(item["name"], load(item["path"], allow_pickle=False))
        if list(array.shape) != list(item["shape"]) or array.dtype != np.dtype(item["dtype"]):
            raise InputError(f"--input {item['name']}={item['path']} is {array.dtype}{list(array.shape)}, the model "
                             f"takes {item['dtype']}{list(item['shape'])}")
        out.append(array)
    return out, made_up


def distribution_version(names, fallback):
    """The version of the first installed distribution of `names` (the wheel's, e.g. 4.11.0.86), else `fallback`."""
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return fallback


def one_line(error, limit=500):
    """A framework's exception as one line of at most `limit` characters."""
    return " ".join(str(error).split())[:limit] or repr(error)
