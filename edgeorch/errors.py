"""User-facing errors: each says what went wrong and what to do next, and carries an exit code."""


class EdgeorchError(Exception):
    """Base of every error a user sees; `hint` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class ConfigError(EdgeorchError):
    """The inventory, a task argument or a recipe is wrong."""

    exit_code = 2


class SetupError(EdgeorchError):
    """Something this machine needs is missing (Docker engine, QEMU, mmdebstrap, a build)."""

    exit_code = 3


class ModelError(EdgeorchError):
    """A model cannot be built, found or read."""

    exit_code = 4


class BoardError(EdgeorchError):
    """A board is unreachable, lacks what it needs, or answered something unexpected."""

    exit_code = 5


class RunError(EdgeorchError):
    """A benchmark run failed, or a sweep finished with missing runs."""

    exit_code = 6


class ConnectionLost(BoardError):
    """The SSH link to a board dropped mid-command: the board died, rebooted, or its link went away."""


class RunTimeout(BoardError):
    """A command on a board did not finish in time: the board or its link is hung."""


class Unreachable(BoardError):
    """A board does not answer SSH at all: powered off, off the network, or a wrong address."""


class BareUnavailable(BoardError):
    """The board cannot take or start the bare-metal bundle (disk, noexec, kernel, arch): its other modes can run."""


class BoardBusy(BoardError):
    """Another edgeorch holds the board's lock."""
