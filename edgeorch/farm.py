"""A shared board farm: each board a place of a labgrid coordinator, reserved (labgrid's queue), locked (acquired),
run and released by whoever needs it, from any host. edgeorch only talks to the coordinator; labgrid does the queue.

A place edgeorch holds carries a lease, the tag `edgeorch_lease` (when it lapses, and whose it is), renewed while
the sweep runs. labgrid never releases an acquired place by itself, so an orchestrator that died (SIGKILL, a lost host)
would hold its boards for ever: another edgeorch waiting for one of them releases it once its lease has lapsed
(atomically, only from that holder) and cancels its reservation. A place acquired without a lease (someone working
with `labgrid-client` by hand) is never taken back."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .console import Reporter
from .errors import BoardBusy, ConfigError, SetupError
from .transport import Link, pause

DEFAULT_PORT = 20408  # labgrid's
LEASE_S = 30.0  # a held place's lease; renewed every third of it
POLL_S = 0.5  # how often a waiting reservation is polled (labgrid drops one not polled for 60 s)
HEALTHY = "healthy"  # the tag `invoke check` sets: "no" keeps sweeps off the place
LEASE = "edgeorch_lease"  # the tag of a held place's lease: UNTIL_HOLDER (Unix seconds, its holder in plain letters)


@dataclass(frozen=True)
class Place:
    """What edgeorch reads of a labgrid place."""
    name: str
    tags: dict[str, str]
    holder: str | None  # "host/user" of whoever acquired it
    since: float  # when it last changed (acquired, released, tagged)
    reservation: str | None  # the token of the reservation it is allocated to
    service: dict | None = None  # its NetworkService resource: address, port, username

    @property
    def lease(self) -> float | None:
        """Until when its holder's edgeorch leases it (None: not held by an edgeorch, or by another holder than the
        lease names)."""
        until, _, holder = self.tags.get(LEASE, "").partition("_")
        return float(until) if until.isdigit() and self.holder and holder == _plain(self.holder) else None


@dataclass(frozen=True)
class Held:
    """A place held for a run: what the results record of it."""
    place: str
    reservation: str
    waited_s: float
    holder: str


def identity() -> str:
    """Who this edgeorch is to the coordinator: host/user (labgrid's LG_HOSTNAME and LG_USERNAME override them)."""
    host = os.environ.get("LG_HOSTNAME") or socket.gethostname()
    return f"{host}/{os.environ.get('LG_USERNAME') or getpass.getuser()}"


def address(value: str) -> str:
    """A coordinator's HOST[:PORT], checked."""
    host, _, port = value.strip().rpartition(":") if ":" in value else (value.strip(), "", str(DEFAULT_PORT))
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--coordinator {value!r} is not HOST:PORT",
                          hint=f"e.g. --coordinator 127.0.0.1:{DEFAULT_PORT} (labgrid's port is {DEFAULT_PORT})")
    return f"{host}:{port}"


_LOOP: list[asyncio.AbstractEventLoop] = []  # the one event loop of every session (gRPC's asyncio wants one)
_LOOP_LOCK = threading.Lock()


def _loop() -> asyncio.AbstractEventLoop:
    """The event loop the farm's sessions run on, in a thread of its own, started on first use."""
    with _LOOP_LOCK:
        if not _LOOP:
            _LOOP.append(asyncio.new_event_loop())
            threading.Thread(target=_LOOP[0].run_forever, name="labgrid", daemon=True).start()
        return _LOOP[0]


class Farm:
    """A session with a labgrid coordinator, shared by a sweep's board threads."""

    def __init__(self, coordinator: str, *, timeout: float = 10.0):
        try:  # grpc and labgrid: only where a farm is used
            from labgrid.remote.client import ClientSession, ServerError
        except ImportError as e:
            raise SetupError(f"a farm needs labgrid, which this Python lacks ({e})",
                             hint="./setup.sh installs it; or pip install 'edgeorch[farm]'") from e
        self.address, self.me, self.timeout = address(coordinator), identity(), timeout
        self.loop = _loop()

        async def start() -> ClientSession:  # its gRPC channel belongs to the loop it is made on
            session = ClientSession(self.address, self.loop)
            await session.channel.close()  # never used: replaced by one that is the session's own
            _own_connection(session)
            try:
                await asyncio.wait_for(session.start(), timeout)
            except BaseException:
                with contextlib.suppress(Exception):
                    await session.stop()
                    await session.close()
                raise
            return session

        logging.disable(logging.ERROR)  # labgrid logs a refused connection itself: the error below says it once
        try:
            self.session = asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout + 5)
        except (ServerError, TimeoutError, OSError) as e:
            raise SetupError(f"the labgrid coordinator at {self.address} does not answer",
                             hint="start it (`invoke farm.up` for the simulated fleet, `labgrid-coordinator` in a "
                                  "lab), or fix --coordinator / $EDGEORCH_COORDINATOR") from e
        finally:
            logging.disable(logging.NOTSET)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self.session.stop())
            self._call(self.session.close())

    def __enter__(self) -> Farm:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, coro):
        """Run a coroutine on the session's loop; a coordinator gone mid-sweep is a SetupError."""
        import grpc
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result(self.timeout)
        except grpc.aio.AioRpcError as e:
            raise _refusal(e) from e
        except TimeoutError as e:
            raise SetupError(f"the labgrid coordinator at {self.address} stopped answering",
                             hint="check that it runs; boards it had given out stay locked until it is back") from e

    def _rpc(self, rpc: str, /, **fields):
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2
        request = getattr(pb2, f"{rpc}Request")(**fields)

        async def call():  # made on the session's loop, as its channel requires
            return await getattr(self.session.stub, rpc)(request)
        return self._call(call())

    def places(self, *names: str) -> dict[str, Place]:
        """The places `names` (default: every one), as the coordinator has them now."""
        async def snapshot() -> dict[str, Place]:  # on the session's loop, which updates what it reads
            await self.session.sync_with_coordinator()
            services = {group: resource.params for groups in self.session.resources.values()
                        for group, resources in groups.items() for resource in resources.values()
                        if resource.cls == "NetworkService"}
            found = {}
            for name in names or list(self.session.places):
                if (p := self.session.places.get(name)) is not None:
                    matched = [services[m.group] for m in p.matches if m.group in services]
                    found[name] = Place(name=name, tags=dict(p.tags), holder=p.acquired, since=p.changed,
                                        reservation=p.reservation,
                                        service=matched[0] if matched else None)
            return found
        return self._call(snapshot())

    def place(self, name: str) -> Place:
        try:
            return self.places(name)[name]
        except KeyError:
            raise ConfigError(f"the farm at {self.address} has no place {name!r}",
                              hint="`invoke farm.export` makes a place of each board of the inventory; "
                                   "`invoke farm.status` lists them") from None

    def add_place(self, name: str, tags: dict[str, str]) -> None:
        """The place `name` (made if missing) matching the resources its exporter publishes under the group `name`,
        with `tags` added to its own."""
        if not self.places(name):
            self._rpc("AddPlace", name=name)
            self._rpc("AddPlaceMatch", placename=name, pattern=f"*/{name}/*")
        self.tag(name, tags)

    def tag(self, name: str, tags: dict[str, str]) -> None:
        """Set tags of a place (an empty value removes one)."""
        self._rpc("SetPlaceTags", placename=name, tags=tags)

    @contextlib.contextmanager
    def hold(self, name: str, *, wait_timeout: float, out: Reporter) -> Iterator[Held]:
        """The place `name` reserved (waiting in labgrid's queue, saying for whom), acquired and leased until the
        block ends, then released and its reservation cancelled, on errors and ^C too."""
        start = time.monotonic()
        reservation = self._rpc("CreateReservation", filters={"main": _filter(name)}, prio=0).reservation
        token, acquired = reservation.token, False
        try:
            self._allocated(name, token, reservation.state, start, wait_timeout, out)
            self._acquire(name)
            acquired = True
            waited = time.monotonic() - start
            with self._lease(name):
                yield Held(place=name, reservation=token, waited_s=round(waited, 3), holder=self.me)
        finally:  # the reservation first: the release then gives the place to the queue's next at once
            with contextlib.suppress(SetupError, BoardBusy):
                self._rpc("CancelReservation", token=token)
            if acquired:
                with contextlib.suppress(SetupError, BoardBusy):
                    self._rpc("ReleasePlace", placename=name, fromuser=self.me)

    def _allocated(self, name: str, token: str, state: int, start: float, wait_timeout: float,
                   out: Reporter) -> None:
        """Poll the reservation (in `state` when made) until the coordinator gives it the place; take back a place
        whose holder's lease lapsed; ConfigError for a place that does not exist; BoardBusy past `wait_timeout`."""
        from labgrid.remote.common import ReservationState
        said = None
        while True:
            state = ReservationState(state)
            if state in (ReservationState.allocated, ReservationState.acquired):
                return
            if state is not ReservationState.waiting:
                raise BoardBusy(f"the farm dropped the reservation of {name} ({state.name})",
                                hint="try again; `invoke farm.status` shows the place")
            place = self.place(name)  # a place that does not exist is an error, not a wait
            if self._lapsed(place, out):  # the queue hands the place on at once
                state = self._rpc("PollReservation", token=token).reservation.state
                continue
            who = place.holder or (f"the reservation {place.reservation}" if place.reservation else said)
            if who and said != who:
                out.step(f"waiting for the farm: held by {who} since {_when(place.since)}", name)
                said = who
            if time.monotonic() - start > wait_timeout:
                raise BoardBusy(f"{name} is still held by {who or 'another user'} after {wait_timeout:g} s in the "
                                "farm's queue",
                                hint="wait longer (--wait-timeout SECONDS), ask them to release it, or pick another "
                                     "board; `invoke farm.status` shows who holds what")
            pause(POLL_S)
            state = self._rpc("PollReservation", token=token).reservation.state

    def _lapsed(self, place: Place, out: Reporter) -> bool:
        """Release a place whose edgeorch holder stopped renewing its lease (only from that holder, atomically),
        its reservation cancelled; True if it did."""
        if place.holder is None or place.lease is None or place.lease > time.time():
            return False
        if place.reservation:  # first, so that the release frees the place for the queue at once
            with contextlib.suppress(SetupError, BoardBusy):
                self._rpc("CancelReservation", token=place.reservation)
        self._rpc("ReleasePlace", placename=place.name, fromuser=place.holder)
        out.note(f"{place.name}: released from {place.holder}",
                 f"its edgeorch lease lapsed at {_when(place.lease)} (that orchestrator stopped)")
        return True

    def _acquire(self, name: str) -> None:
        try:
            self._rpc("AcquirePlace", placename=name)
        except BoardBusy as e:
            holder = self.place(name).holder or "someone"
            raise BoardBusy(f"{name} was locked by {holder} between its reservation and edgeorch's lock "
                            f"({e.message})", hint="someone acquired it without reserving: ask them to release it "
                                                   "(labgrid-client release), then run again") from e

    @contextlib.contextmanager
    def _lease(self, name: str) -> Iterator[None]:
        """The place's lease, renewed by a thread every third of LEASE_S until the block ends (then left to lapse:
        it names its holder, so it never covers the next one)."""
        stop = threading.Event()

        def renew() -> None:
            self.tag(name, {LEASE: f"{int(time.time() + LEASE_S)}_{_plain(self.me)}"})

        def beat() -> None:
            while not stop.wait(LEASE_S / 3):
                with contextlib.suppress(Exception):  # a missed renewal is retried; LEASE_S allows two
                    renew()

        renew()
        thread = threading.Thread(target=beat, name=f"lease-{name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


@contextlib.contextmanager
def held_link(board, farm: Farm | None, *, token: str, purpose: str, wait_timeout: float, out: Reporter,
              on_hold: Callable[[Held], None] = lambda held: None) -> Iterator[Link]:
    """The board held until the block ends: first its place in the farm, where there is one (its queue, its lock,
    released whatever happens; `on_hold` is told), then edgeorch's own lock over SSH (a second guard, for whoever
    bypasses the farm)."""
    with (farm.hold(board.name, wait_timeout=wait_timeout, out=out) if farm
          else contextlib.nullcontext()) as held:
        if held:
            on_hold(held)
        with Link(board, token=token, purpose=purpose, out=out) as link:
            yield link


def _own_connection(session) -> None:
    """A connection of the session's own: the coordinator tells clients apart by their TCP peer, and gRPC would share
    one connection between the sessions of a process (two users' in a test, a sweep's and its check's)."""
    import grpc
    from labgrid.remote.generated import labgrid_coordinator_pb2_grpc
    options = [("grpc.keepalive_time_ms", 7500), ("grpc.keepalive_timeout_ms", 10000),
               ("grpc.http2.ping_timeout_ms", 10000), ("grpc.http2.max_pings_without_data", 0),
               ("grpc.use_local_subchannel_pool", 1)]  # labgrid's options, and this one
    session.channel = grpc.aio.insecure_channel(target=session.address, options=options)
    session.stub = labgrid_coordinator_pb2_grpc.CoordinatorStub(session.channel)


def _filter(name: str):
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2
    return pb2.Reservation.Filter(filter={"board": name})


def _plain(holder: str) -> str:
    """host/user in the letters a tag value may hold."""
    return re.sub(r"[^a-z0-9_]", "_", holder.lower())


def _when(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _refusal(e) -> BoardBusy:
    """The coordinator's refusal of a request, as a BoardBusy naming its reason."""
    return BoardBusy(f"the farm refused: {e.details()}",
                     hint="`invoke farm.status` shows the places and who holds them")


def board_tags(board) -> dict[str, str]:
    """The tags a board's place carries: its name (what reservations ask for), arch, groups and release."""
    tags = {"board": board.name, "arch": board.arch.value, HEALTHY: "yes"}
    tags.update({f"group_{g}": "yes" for g in board.groups if g.replace("_", "").isalnum()})
    if board.sim:
        tags["release"] = board.sim_release
    return tags


def exporter_config(boards) -> dict:
    """The labgrid exporter configuration of `boards`: a NetworkService per board, in a group named after it."""
    return {b.name: {"NetworkService": {"address": b.ssh.hostname, "port": b.ssh.port, "username": b.ssh.user}}
            for b in boards}


def through(board, place: Place):
    """The board as its place says it is reached (address, port, user of its NetworkService)."""
    if not place.service:
        raise ConfigError(f"the farm's place {place.name} has no NetworkService resource (no exporter publishes it)",
                          hint="start the exporter of its shelf (`invoke farm.up` for the simulated fleet), "
                               "with the configuration `invoke farm.export` wrote")
    s = place.service
    return dataclasses.replace(board, host=str(s["address"]), port=int(s["port"]), user=str(s["username"]), ssh=None)


def coordinator(given: str | None, inventory) -> str | None:
    """The farm's coordinator: --coordinator, else $EDGEORCH_COORDINATOR, else the inventory's `coordinator`."""
    return given or os.environ.get("EDGEORCH_COORDINATOR") or inventory.coordinator


def open_farm(given: str | None, inventory, *, required: bool = False) -> contextlib.AbstractContextManager:
    """The farm to go through, or None (the boards driven directly) when no coordinator is named (a ConfigError
    if `required`: the farm's own tasks)."""
    found = coordinator(given, inventory)
    if not found and required:
        raise ConfigError("no labgrid coordinator named", hint="pass --coordinator HOST:PORT, set "
                          "$EDGEORCH_COORDINATOR, or write `coordinator: HOST:PORT` in the inventory")
    return Farm(found) if found else contextlib.nullcontext()


def farm_boards(inventory, host: str, farm: Farm, out: Reporter, *, skip: bool = True) -> list:
    """The boards of `host` as places of the farm, reached as their places say: a board, a group, `tag:KEY=VALUE`
    (every place with that tag), or a comma list of them. A place the last `invoke check` marked unhealthy is skipped
    (if `skip`) unless named itself."""
    places = farm.places()
    words = [w.strip() for w in host.split(",")]
    names: list[str] = []
    for word in words:
        if word.startswith("tag:"):
            key, _, value = word[4:].partition("=")
            tagged = sorted(p.name for p in places.values() if p.tags.get(key) == value)
            if not tagged:
                raise ConfigError(f"--host {word}: no place of the farm at {farm.address} has the tag {key}={value}",
                                  hint="`invoke farm.status` lists the places and their tags")
            names += tagged
        else:
            names += [b.name for b in inventory.select(word)]
    by_name = {b.name: b for b in inventory.boards}
    boards = []
    for name in dict.fromkeys(names):
        if name not in places:
            raise ConfigError(f"board {name} is not a place of the farm at {farm.address}",
                              hint="`invoke farm.export` makes a place of every board of the inventory")
        if name not in by_name:
            raise ConfigError(f"the farm's place {name} is not a board of {inventory.path}",
                              hint="add it to the inventory (its arch and frameworks; its address comes from the "
                                   "farm), or select places by a tag that only boards of the inventory carry")
        if skip and places[name].tags.get(HEALTHY) == "no" and name not in words:
            out.note(f"skipping {name}", f"the farm marks it unhealthy (its last `invoke check` failed); fix it and "
                                         f"run `invoke check --host {name}`, or name it to try anyway")
            continue
        boards.append(through(by_name[name], places[name]))
    if not boards:
        raise ConfigError(f"every board of --host {host} is marked unhealthy in the farm",
                          hint="fix them and rerun `invoke check`, or name a board explicitly")
    return boards
