"""The boards: load inventory.yaml, validate every field, select boards by name or group.

A board's SSH settings are layered as OpenSSH layers them: what the inventory gives explicitly wins (like
`ssh -p`), then ~/.ssh/config (and /etc/ssh/ssh_config) for the board's `host:`, then ssh's defaults.
"""

from __future__ import annotations

import copy
import getpass
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import yaml

from .arch import Arch
from .bench.power import meter_reference
from .errors import ConfigError

_REQUIRED = ("name", "host", "arch")
_KNOWN = {"name", "host", "port", "user", "arch", "identity_file", "known_hosts", "workdir",
          "groups", "frameworks", "python", "docker_args", "sim", "sim_release", "sim_packages", "power_meter"}


SSH_CONFIGS = ("~/.ssh/config", "/etc/ssh/ssh_config")  # read in this order; as in ssh, the first value wins
USER_KNOWN_HOSTS = "~/.ssh/known_hosts"
GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
# SSH keepalive when ssh_config sets none: a board that disappears is noticed within about a minute (ssh's own
# default is none at all, and TCP takes 15 minutes to give up on a dead link)
ALIVE_INTERVAL_S = 15
ALIVE_COUNT_MAX = 3

# What OpenSSH (misc.c valid_hostname, valid_ruser; 9.6 on) refuses in a host or user name it is given: a
# ProxyCommand run by a shell would take them as shell syntax, since %h, %n and %r put the names in unquoted
HOST_REFUSED = "'`\"$\\;&<>|(){},"
USER_REFUSED = "'`\";&<>|(){}"


@dataclass(frozen=True, kw_only=True)
class Hop:
    """One SSH connection as it is really made: its values, the files its host key is checked against, and
    where each value came from (for messages)."""
    host: str                              # as written: the inventory's `host:` or an entry of a ProxyJump
    hostname: str                          # what is connected to: ssh_config's HostName, else `host`
    port: int
    user: str
    identity_files: tuple[Path, ...] = ()  # none: ssh-agent and ~/.ssh/id_*, as ssh does
    identity_from: str = ""                # "the inventory FILE", "IdentityFile in ~/.ssh/config", ...
    known_hosts: tuple[Path, ...] = ()     # its host key must be pinned in one of these
    known_hosts_from: str = ""
    from_config: tuple[str, ...] = ()      # the ssh_config keywords that applied: ("HostName", "Port", ...)
    config_file: str = "~/.ssh/config"
    proxy_command: str | None = None       # ssh_config's ProxyCommand (its %h, %p... substituted), when no ProxyJump
    alive_interval: int = ALIVE_INTERVAL_S  # ssh_config's ServerAliveInterval: seconds between keepalives, 0 none
    alive_count_max: int = ALIVE_COUNT_MAX  # ServerAliveCountMax: keepalives unanswered before the link counts as lost

    @property
    def address(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"

    def origin(self) -> str:
        """`HostName, Port from ~/.ssh/config (Host myboard)`, or '' when ssh_config gave nothing."""
        return f"{', '.join(self.from_config)} from {self.config_file} (Host {self.host})" if self.from_config else ""


def read_ssh_config() -> tuple[paramiko.SSHConfig, str]:
    """The user's and the system's ssh_config, parsed as ssh reads them; and the name to show in messages."""
    config, read = paramiko.SSHConfig(), []
    for name in SSH_CONFIGS:
        path = Path(name).expanduser()
        if not path.is_file():
            continue
        try:
            with open(path) as f:
                config.parse(f)
        except (OSError, UnicodeDecodeError, paramiko.ssh_exception.ConfigParseError) as e:
            raise ConfigError(f"{path} cannot be read: {e}",
                              hint="fix or remove it (`ssh -G HOST` shows how ssh reads it)") from e
        read.append(name)
    return config, (read[0] if read else SSH_CONFIGS[0])


def resolve_hop(host: str, config: paramiko.SSHConfig, *, port: int | None = None, user: str | None = None,
                identity_file: Path | None = None, known_hosts: Path | None = None,
                given_in: str = "the inventory", config_file: str = SSH_CONFIGS[0]) -> Hop:
    """How ssh would connect to `host`: the values given here win, then `config`'s entry for it, then ssh's
    defaults (port 22, the local user, ssh-agent and ~/.ssh/id_*, ~/.ssh/known_hosts)."""
    entry = _as_written(config).lookup(host)
    used = []
    hostname = entry.get("hostname", host)
    if hostname != host:
        used.append("HostName")
    if port is None and "port" in entry:
        try:
            port = int(entry["port"])
        except ValueError:
            raise ConfigError(f"{config_file}, Host {host}: Port {entry['port']!r} is not a number",
                              hint="fix the Port line") from None
        used.append("Port")
    if user is None and "user" in entry:
        user = entry["user"]
        used.append("User")
    if identity_file is not None:
        identities, identity_from = (identity_file,), given_in
    elif entry.get("identityfile"):
        identities = tuple(Path(p).expanduser() for p in entry["identityfile"] if p.lower() != "none")
        identity_from = f"IdentityFile in {config_file} (Host {host})"
        used.append("IdentityFile")
    else:
        identities, identity_from = (), ""
    if known_hosts is not None:
        pinned, pinned_from = (known_hosts,), given_in
    elif "userknownhostsfile" in entry:
        pinned = tuple(Path(p).expanduser() for p in entry["userknownhostsfile"].split() if p.lower() != "none")
        pinned, pinned_from = pinned + (Path(GLOBAL_KNOWN_HOSTS),), f"UserKnownHostsFile in {config_file}"
        used.append("UserKnownHostsFile")
    else:
        pinned, pinned_from = (Path(USER_KNOWN_HOSTS).expanduser(), Path(GLOBAL_KNOWN_HOSTS)), "ssh's default"
    if user is None:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):  # no login name and no passwd entry: a bare container
            raise ConfigError(f"no user for {host}: none in the inventory or {config_file}, and no local login name",
                              hint="add `user:` to the board") from None
    port = 22 if port is None else port
    command = entry.get("proxycommand")
    if command and command.lower() != "none" and "proxyjump" not in entry:
        used.append("ProxyCommand")
        tokens = {"h": hostname, "n": host, "p": str(port), "r": user, "k": entry.get("hostkeyalias", host)}
        try:
            command = percent_expand(command, tokens)
        except ValueError as e:
            raise ConfigError(f"{config_file}, Host {host}: ProxyCommand {e}",
                              hint="use %h, %n, %p, %r or %k, and %% for a % itself (as ssh does)") from None
    else:
        command = None
    interval = _config_number(entry, "ServerAliveInterval", host, config_file, ALIVE_INTERVAL_S, seconds=True)
    count_max = _config_number(entry, "ServerAliveCountMax", host, config_file, ALIVE_COUNT_MAX)
    return Hop(host=host, hostname=hostname, port=port, user=user,
               identity_files=identities, identity_from=identity_from, known_hosts=pinned,
               known_hosts_from=pinned_from, from_config=tuple(used), config_file=config_file,
               proxy_command=command, alive_interval=interval, alive_count_max=count_max)


def _as_written(config: paramiko.SSHConfig) -> paramiko.SSHConfig:
    """`config` whose lookups leave ProxyCommand's %-tokens alone for percent_expand: paramiko's substitution is not
    ssh's (`%%h` comes out as `%` and the host, then its `%r` is substituted too; `%n` is left; the inventory's
    `user:` and `port:` are not what %r and %p give)."""
    written = copy.copy(config)  # shares the parsed entries; only which keys are tokenized differs
    written.TOKENS_BY_CONFIG_KEY = {k: v for k, v in config.TOKENS_BY_CONFIG_KEY.items() if k != "proxycommand"}
    return written


def percent_expand(text: str, tokens: dict[str, str]) -> str:
    """`text` with each %x replaced by tokens["x"] and %% by one %, in one pass from the left as OpenSSH's
    percent_expand does: what a token puts in is never read again. ValueError for a %x with no token, or a lone %."""
    def one(m: re.Match) -> str:
        key = m.group(1)
        if key == "%":
            return "%"
        if key not in tokens:
            raise ValueError(f"{m.group(0)!r} is not a token ssh knows there" if key else "ends with a lone %")
        return tokens[key]

    return re.sub(r"%(.?)", one, text, flags=re.DOTALL)


def _config_number(entry: dict, keyword: str, host: str, config_file: str, default: int, seconds: bool = False) -> int:
    """ssh_config's `keyword` for `host` as a whole number (seconds, with ssh's s/m/h suffixes, if `seconds`), or
    `default` when it is not set."""
    value = entry.get(keyword.lower())
    if value is None:
        return default
    text = value.strip().lower()
    if not re.fullmatch(r"(\d+[smhdw]?)+" if seconds else r"\d+", text):
        raise ConfigError(f"{config_file}, Host {host}: {keyword} {value!r} is not a whole number"
                          + (" of seconds" if seconds else ""), hint=f"fix the {keyword} line")
    units = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhdw]?)", text))


def refused_character(value: str, *, user: bool = False) -> str | None:
    """What OpenSSH refuses in `value` as a host name (or, with `user`, a user name), described; None when it
    takes it."""
    if value.startswith("-"):
        return "a leading `-` (ssh would take it for an option)"
    for i, c in enumerate(value):
        if ord(c) < 32 or ord(c) == 127:
            return f"the control character {c!r}"
        if c in (USER_REFUSED if user else HOST_REFUSED):
            return f"`{c}`"
        if c.isspace() and (not user or value[i + 1:i + 2] == "-"):
            return "a space" if c == " " else f"the white space {c!r}"
        if user and c == "\\" and i == len(value) - 1:
            return "a `\\` at the end"
    return None


def parse_jump(spec: str) -> tuple[str | None, str, int | None]:
    """One ProxyJump entry, `[user@]host[:port]` or `ssh://[user@]host[:port]`, as (user, host, port)."""
    rest = spec.strip().removeprefix("ssh://")
    user, _, rest = rest.rpartition("@")
    host, port = rest, None
    if rest.startswith("["):  # [v6 address]:port
        host, _, tail = rest[1:].partition("]")
        port = tail.removeprefix(":") or None
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    if not host or (port is not None and not port.isdigit()):
        raise ValueError(f"{spec!r} is not [user@]host[:port]")
    return user or None, host, int(port) if port else None


def resolve_jumps(host: str, config: paramiko.SSHConfig, *, known_hosts: Path | None = None,
                  given_in: str = "the inventory", config_file: str = SSH_CONFIGS[0],
                  _seen: tuple[str, ...] = ()) -> tuple[Hop, ...]:
    """The jump hosts in front of `host` (ssh_config's ProxyJump), in the order they are connected; each is
    itself looked up in ssh_config, and its key checked against the same known_hosts files as the board's."""
    spec = config.lookup(host).get("proxyjump", "")
    if not spec or spec.lower() == "none":
        return ()
    hops: list[Hop] = []
    for i, entry in enumerate(spec.split(",")):
        try:
            user, jump, port = parse_jump(entry)
        except ValueError as e:
            raise ConfigError(f"{config_file}, Host {host}: ProxyJump {e}",
                              hint="write ProxyJump [user@]jumphost[:port], several separated by commas") from None
        if jump == host or jump in _seen:  # `Host *` with a ProxyJump also matches the jump host itself
            continue
        if i == 0:  # like `ssh -J`: the first jump host's own ProxyJump applies, the later ones' do not
            hops.extend(resolve_jumps(jump, config, known_hosts=known_hosts, given_in=given_in,
                                      config_file=config_file, _seen=(*_seen, host)))
        hops.append(resolve_hop(jump, config, port=port, user=user, known_hosts=known_hosts,
                                given_in=given_in, config_file=config_file))
    return tuple(hops)


@dataclass(frozen=True, kw_only=True)
class Board:
    name: str
    host: str                        # as written in the inventory: an address, or a Host of ~/.ssh/config
    port: int = 22                   # really used: the inventory's, else ssh_config's, else 22
    user: str                        # really used: the inventory's, else ssh_config's, else the local user
    arch: Arch
    identity_file: Path | None = None  # the inventory's; None: ssh_config's IdentityFile, else ssh's defaults
    known_hosts: Path | None = None    # the inventory's; None: ~/.ssh/known_hosts (or ssh_config's)
    workdir: str = "edgeorch"        # relative to the user's home unless absolute
    groups: tuple[str, ...] = ()
    frameworks: tuple[str, ...] = ("tflite",)
    python: str = "python3"
    docker_args: tuple[str, ...] = ()  # added to `docker create`, e.g. --runtime nvidia on a Jetson
    sim: bool = False
    sim_release: str = "bookworm"    # a simulated board's Debian release (its userland is made from images/base*)
    sim_packages: tuple[str, ...] = ()  # the Debian packages its owner installed (a framework's, for native mode)
    power_meter: tuple[str, ...] = ()  # a command run on the board (no shell) that prints watts: a USB or I2C meter
    ssh: Hop | None = None             # how the board is reached; made from the fields above when not given
    jump: tuple[Hop, ...] = ()         # ProxyJump hosts in front of it, in the order they are connected

    def __post_init__(self):
        if self.ssh is None:
            object.__setattr__(self, "ssh", resolve_hop(
                self.host, paramiko.SSHConfig(), port=self.port, user=self.user,
                identity_file=self.identity_file, known_hosts=self.known_hosts))

    @property
    def address(self) -> str:
        """user@hostname:port really connected to, and the jump hosts (or ProxyCommand) on the way."""
        via = f" via {', '.join(h.address for h in self.jump)}" if self.jump else ""
        first = self.jump[0] if self.jump else self.ssh
        return self.ssh.address + via + (" via its ProxyCommand" if first.proxy_command else "")


@dataclass(frozen=True)
class Inventory:
    path: Path
    boards: tuple[Board, ...] = field(default=())
    coordinator: str | None = None  # a labgrid coordinator's HOST:PORT: the boards are places of its farm

    def groups(self) -> dict[str, list[str]]:
        """Group name -> board names, including the implicit group `all`."""
        out: dict[str, list[str]] = {"all": [b.name for b in self.boards]}
        for b in self.boards:
            for g in b.groups:
                out.setdefault(g, []).append(b.name)
        return out

    def select(self, spec: str) -> list[Board]:
        """Boards named by `spec`: a board, a group, or a comma list of either, in inventory order."""
        by_name = {b.name: b for b in self.boards}
        groups = self.groups()
        wanted: set[str] = set()
        for word in (w.strip() for w in spec.split(",")):
            if word in by_name:
                wanted.add(word)
            elif word in groups:
                wanted.update(groups[word])
            else:
                raise ConfigError(
                    f"--host {word!r} is neither a board nor a group in {self.path}",
                    hint=f"use one of the boards {sorted(by_name)} or groups {sorted(groups)}, "
                         "or add the board to the inventory",
                )
        return [b for b in self.boards if b.name in wanted]


def load_inventory(path: str | Path, ssh_config: tuple[paramiko.SSHConfig, str] | None = None) -> Inventory:
    """Read and validate an inventory file; any problem is a ConfigError naming file, board, field.

    Each board's SSH settings are completed from `ssh_config` (config, name for messages), by default
    ~/.ssh/config and /etc/ssh/ssh_config."""
    path = Path(path).resolve()
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"inventory {path} does not exist",
                          hint="create it (see docs/tutorial.md: add the board) or pass --inventory") from None
    except IsADirectoryError:  # an empty $EDGEORCH_INVENTORY or --inventory names the directory it is run in
        raise ConfigError(f"inventory {path} is a directory, not a file",
                          hint="pass the inventory file itself, e.g. --inventory inventory.yaml") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"inventory {path} is not valid YAML: {e}",
                          hint="fix the syntax at the line shown") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("boards"), list):
        raise ConfigError(f"inventory {path} has no `boards:` list",
                          hint="write `boards:` followed by one `- name: ...` entry per board")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"inventory {path}: `defaults` must be a mapping of board fields",
                          hint="write `defaults:` followed by indented `field: value` lines (e.g. `user: pi`)")
    coordinator = doc.get("coordinator")
    if coordinator is not None and not (isinstance(coordinator, str) and coordinator.strip()):
        raise ConfigError(f"inventory {path}: `coordinator` must be a labgrid coordinator's HOST:PORT",
                          hint="e.g. `coordinator: farm.lab:20408`, or remove the line to drive the boards directly")
    boards: list[Board] = []
    for i, entry in enumerate(doc["boards"]):
        if not isinstance(entry, dict):
            raise ConfigError(f"inventory {path}: boards[{i}] is not a mapping",
                              hint="each board is a `- name: ...` block of fields")
        if ssh_config is None:
            ssh_config = read_ssh_config()
        board = _board({**defaults, **entry}, path, i, ssh_config)
        if any(b.name == board.name for b in boards):
            raise ConfigError(f"inventory {path}: board {board.name!r} is defined twice",
                              hint="give every board a unique name")
        boards.append(board)
    return Inventory(path, tuple(boards), coordinator)


def _board(raw: dict, path: Path, index: int, ssh_config: tuple[paramiko.SSHConfig, str]) -> Board:
    """One board of the inventory, every field checked, its SSH settings completed from `ssh_config`."""
    name = raw.get("name")
    where = f"inventory {path}, board {name!r}" if name else f"inventory {path}, boards[{index}]"

    def bad(field: str, problem: str, hint: str) -> ConfigError:
        return ConfigError(f"{where}, field `{field}`: {problem}", hint=hint)

    _check_fields(raw, bad)
    workdir = _workdir(raw.get("workdir", "edgeorch"), bad)
    try:
        arch = Arch.parse(str(raw["arch"]))
    except ValueError:
        raise bad("arch", f"{raw['arch']!r} is not a known architecture",
                  f"use one of {[a.value for a in Arch]}") from None
    port = raw.get("port")
    _check_address(raw, bad)
    groups, frameworks, docker_args, power_meter, sim_packages = _lists(raw, bad)
    host = str(raw["host"])
    identity_file, known_hosts = _local_path(raw, "identity_file", path), _local_path(raw, "known_hosts", path)
    config, config_file = ssh_config
    try:
        hop = resolve_hop(host, config, port=port, user=None if raw.get("user") is None else str(raw["user"]),
                          identity_file=identity_file, known_hosts=known_hosts, given_in=f"the inventory {path}",
                          config_file=config_file)
        jump = resolve_jumps(host, config, known_hosts=known_hosts, given_in=f"the inventory {path}",
                             config_file=config_file)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e.message}", hint=e.hint) from e
    return Board(
        name=name, host=host, port=hop.port, user=hop.user, arch=arch,
        identity_file=identity_file, known_hosts=known_hosts, ssh=hop, jump=jump,
        workdir=workdir, groups=tuple(groups),
        frameworks=tuple(frameworks), python=str(raw.get("python", "python3")),
        docker_args=tuple(docker_args), sim=bool(raw.get("sim", False)),
        sim_release=str(raw.get("sim_release", "bookworm")), sim_packages=tuple(sim_packages),
        power_meter=tuple(power_meter),
    )


def _check_fields(raw: dict, bad) -> None:
    """The required fields are there, every field is a known one, and the name is a plain one."""
    name = raw.get("name")
    for key in _REQUIRED:
        if raw.get(key) in (None, ""):
            raise bad(key, "is missing", f"add `{key}:` to the board")
    unknown = set(raw) - _KNOWN
    if unknown:
        raise bad(sorted(unknown)[0], "is not a known field", f"known fields: {sorted(_KNOWN)}")
    # ASCII, and no leading -: a name is typed after --host and shown in file names and tables
    if not isinstance(name, str) or not name.isascii() or not name.replace("-", "").replace("_", "").isalnum() \
            or name.startswith("-"):
        raise bad("name", f"{name!r} is not a plain name",
                  "use ASCII letters, digits, - and _ (not first), e.g. rpi4-lab")


def _check_address(raw: dict, bad) -> None:
    """`port`, `host` and `user` are values ssh takes (and would not hand to a shell)."""
    port = raw.get("port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535):
        raise bad("port", f"{port!r} is not a TCP port",
                  "use a number from 1 to 65535, or leave it out (ssh_config's Port, else 22)")
    for key in ("host", "user"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, (str, int)) or not str(value).strip()
                                  or any(c.isspace() for c in str(value))):
            raise bad(key, f"{value!r} is not a {'host name or address' if key == 'host' else 'user name'}",
                      "write it without spaces" + (", or leave it out (ssh_config's User, else yours)"
                                                   if key == "user" else ""))
        # as ssh refuses them: a ProxyCommand that a shell runs would run what follows (`host: x;touch /tmp/p`)
        refused = None if value is None else refused_character(str(value), user=key == "user")
        if refused:
            raise bad(key, f"{value!r} contains {refused}, which ssh refuses in a "
                           f"{'host' if key == 'host' else 'user'} name (a ProxyCommand would hand it to a shell)",
                      "write the board's address or a Host alias of ~/.ssh/config, which takes no quotes, $, ;, &, "
                      "|, <, >, (, ), braces or commas" if key == "host" else
                      "write the login name as the board knows it (no quotes, ;, &, |, <, >, (, ) or braces), or "
                      "leave it out (ssh_config's User, else yours)")


def _lists(raw: dict, bad) -> tuple[list[str], list[str], list[str], list[str], list[str]]:
    """The board's (groups, frameworks, docker_args, power_meter, sim_packages), each a checked list of strings."""
    groups = raw.get("groups", [])
    frameworks = raw.get("frameworks", ["tflite"])
    docker_args = raw.get("docker_args", [])
    power_meter = raw.get("power_meter", [])
    sim_packages = raw.get("sim_packages", [])
    for key, value in (("groups", groups), ("frameworks", frameworks), ("docker_args", docker_args),
                       ("power_meter", power_meter), ("sim_packages", sim_packages)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad(key, f"{value!r} is not a list of " + ("words" if key == "power_meter" else "names"),
                      "write where the meter's command is on the board: `power_meter: ['@/path']` or `['env:NAME']`"
                      if key == "power_meter" else f"write `{key}: [a, b]`")
    if power_meter and meter_reference(power_meter) is None:
        raise bad("power_meter", f"is a command with arguments (program {posixpath.basename(power_meter[0])}): its "
                  "words would be on the board's command line (its `ps`), in commands.log and in the results, and a "
                  "meter's may hold a token",
                  "put the command in a file on the board that only its login can write (chmod 600), and write "
                  "`power_meter: ['@/home/LOGIN/.config/edgeorch-meter']` (the file holds its words, or JSON "
                  '{"command": [...], "env": {"TOKEN": "..."}} to hand the meter a token in its environment); or set '
                  "it in an environment variable of the board's login and write `power_meter: ['env:NAME']`; a "
                  "program alone, without arguments, may be written as it is")
    if "all" in groups:
        raise bad("groups", "`all` is reserved for every board", "pick another group name")
    if odd := [p for p in sim_packages if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", p)]:
        raise bad("sim_packages", f"{odd[0]!r} is not a Debian package name",
                  "write the names apt knows, e.g. `sim_packages: [python3-onnxruntime]`")
    if sim_packages and not raw.get("sim"):
        raise bad("sim_packages", "is for a simulated board (`sim: true`), whose userland edgeorch makes",
                  "install the packages on the board itself (sudo apt install ...) and remove the line")
    return groups, frameworks, docker_args, power_meter, sim_packages


def _local_path(raw: dict, key: str, inventory: Path) -> Path | None:
    """A path field of the board, relative to the inventory's folder unless absolute; None where it is absent."""
    value = raw.get(key)
    if value is None:
        return None
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else (inventory.parent / p).resolve()


# Directories that hold others' files: a workdir there would have edgeorch create, and `clean` remove, beside them.
# Any depth under these; the directory itself and its direct children under _SHARED_PARENTS (a home, /usr/local,
# /var/lib, a mount point); and every top-level directory (/data, /opt, /tmp) and / itself.
_SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin", "/sys")
_SHARED_PARENTS = ("/home", "/media", "/mnt", "/run", "/usr", "/var")


def _workdir(value, bad) -> str:
    """The board's `workdir:` as a path on the board, relative to the login's home unless absolute: a folder of
    edgeorch's own, never a home, `.`, `/` or a system directory (`clean` removes what edgeorch made there)."""
    if not isinstance(value, (str, int)) or not str(value).strip():
        raise bad("workdir", f"{value!r} is not a directory", "write a path, e.g. `workdir: edgeorch`")
    workdir = str(value)
    if any(not c.isprintable() for c in workdir):  # a newline or tab in a path is a typo, and breaks `pwd` answers
        raise bad("workdir", f"{workdir!r} contains a control character",
                  "write the path without newlines, tabs or other control characters")
    if workdir.startswith("~") and workdir != "~" and not workdir.startswith("~/"):
        raise bad("workdir", f"{workdir!r}: another user's ~ is not expanded on the board",
                  "write the absolute path, or one relative to the login's home")
    # no shell sees it, so `~` is not expanded on the board: ~/x is x, relative to the home
    on_board = workdir[2:] if workdir.startswith("~/") else "" if workdir == "~" else workdir
    shared = _shared_directory(on_board)
    if shared:
        suggestion = "~/edgeorch" if not on_board.startswith("/") or on_board.rstrip("/") in ("", "/root") \
            or re.fullmatch(r"/home/[^/]+/*", on_board) else posixpath.join(posixpath.normpath(on_board), "edgeorch")
        raise bad("workdir", f"{workdir!r} is {shared}: edgeorch would create files beside the ones there, and "
                  "`invoke clean` would remove what it made among them",
                  f"give edgeorch a folder of its own, e.g. `workdir: {suggestion}`")
    return on_board


def _shared_directory(path: str) -> str:
    """What `path` on the board is when it holds others' files too (a home, the filesystem's root, a system
    directory), else ''."""
    normal = posixpath.normpath(path) if path else "."
    parts = [p for p in normal.split("/") if p]
    if not normal.startswith("/"):
        if normal == ".":
            return "the login's home"
        return "outside the login's home" if parts[0] == ".." else ""
    if "/".join(("", *parts[:1])) in _SYSTEM_TREES:
        return "a system directory"
    if not parts:
        return "the filesystem's root"
    if parts == ["root"] or (len(parts) == 2 and parts[0] == "home"):
        return "a home directory"
    if len(parts) == 1:
        return "a top-level directory"
    if len(parts) == 2 and "/" + parts[0] in _SHARED_PARENTS:
        return "a system directory or a mount point"
    return ""
