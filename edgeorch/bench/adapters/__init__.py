"""Framework adapters, one module each, found by name: naming a framework imports its module only, so a board
without TensorFlow can still run TFLite and nothing imports a framework it does not run.

Adding a framework means one module here, named after it, with one Adapter subclass whose `name` is the
framework's, and one image recipe under images/. A framework served by another's module is listed in SHARED.
"""

import importlib
import os

from .base import Adapter, FrameworkMissing, ModelLoadError, NotProfiled, OptionError  # noqa: F401  # what the entrypoint catches

SHARED = {"litert": "tflite"}  # framework -> the module of another framework that holds its adapter too

# framework name -> the module of this package that holds its adapter (read from the files: nothing imported)
ADAPTERS = {**{name[:-3]: name[:-3] for name in os.listdir(os.path.dirname(__file__))
               if name.endswith(".py") and name not in ("__init__.py", "base.py")}, **SHARED}


def names():
    """The frameworks this bundle has an adapter for."""
    return sorted(ADAPTERS)


def get(name):
    """The adapter class of framework `name`, importing its module now; KeyError for an unknown name."""
    module = importlib.import_module(f"{__name__}.{ADAPTERS[name]}")
    found = [c for c in vars(module).values()
             if isinstance(c, type) and issubclass(c, Adapter) and c.__module__ == module.__name__ and c.name == name]
    if len(found) != 1:
        raise KeyError(f"{module.__name__} has {len(found)} adapters named {name!r}, not one")
    return found[0]
