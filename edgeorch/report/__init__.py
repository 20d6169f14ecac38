"""Tables from the normalized results: Docker vs bare metal per board and model, with a verdict."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from ..analysis import GROUP
from ..arch import Arch
from ..models import zoo, zoo_models
from ..plan import label
from ..recipes import PYTHONS


def _s(value) -> str:
    """A value from a board, a model or the user as table text: printed as it is, never read as rich markup (a board
    named `[/x]` would end the collection with a MarkupError, one named `[bold]` would restyle the table)."""
    return escape(str(value))


class FitTable(Table):
    """A table that fits the width it is printed at: a `fold` column whose rows all say the same goes to the caption,
    then the least important columns (`drop`, in order) are left out, until it fits; no other column is ever cut."""

    def __init__(self, *args, fold: tuple[str, ...] = (), drop: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.fold, self.drop = tuple(fold), tuple(drop)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from Table.__rich_console__(self.fitted(console, options), console, options)

    def fitted(self, console: Console, options: ConsoleOptions) -> Table:
        """A copy of the table with the columns that fit `options.max_width`, the others named in its caption."""
        wide = options.update_width(10_000)
        t = copy.copy(self)
        t.columns = [c if c.header in (*self.fold, *self.drop) else  # the verdict's: whole, never wrapped or cut
                     dataclasses.replace(c, no_wrap=True, width=max(Measurement.get(console, wide, x).maximum
                                                                    for x in (c.header, *c.cells)))
                     for c in self.columns]
        same = [c for c in t.columns if c.header in self.fold and len({str(x) for x in c.cells}) == 1]
        folded, left_out = [], []
        for column in [*same, *(c for h in self.drop for c in t.columns if c.header == h)]:
            if Measurement.get(console, wide, t).maximum <= options.max_width:
                break
            t.columns = [c for c in t.columns if c is not column]
            if column in same:
                folded.append(f"{column.header} {next(iter(column.cells))}")
            else:
                left_out.append(str(column.header))
        t.columns = [dataclasses.replace(c, _index=i) for i, c in enumerate(t.columns)]
        t.caption = "\n".join([*([self.caption] if self.caption else []),
                                *([f"every row: {', '.join(folded)}"] if folded else []),
                                *([f"left out to fit: {', '.join(left_out)}"] if left_out else [])]) or None
        return t


def _table(title: str, columns: list[str], *, fold: tuple[str, ...] = (), drop: tuple[str, ...] = (),
           right: tuple[str, ...] = ()) -> FitTable:
    """A table of results that fits the terminal: no vertical rules, names folded only as a last resort."""
    t = FitTable(title=title, box=box.SIMPLE, pad_edge=False, collapse_padding=True, show_edge=False,
                 caption_justify="left", fold=fold, drop=drop)
    for col in columns:
        names = col in ("board", "framework", "model")
        t.add_column(col, justify="right" if col in right else "left", no_wrap=not names,
                     overflow="fold" if names else "ellipsis")
    return t


def _ms(v) -> str:
    """Milliseconds, or microseconds below one (a sub-millisecond model does not print 0.00 ms), or seconds from one
    (a network under QEMU does not print 2512.19 ms)."""
    if v is None or pd.isna(v):
        return "-"
    return f"{v * 1000:.0f} µs" if v < 1 else f"{v:.2f} ms" if v < 1000 else f"{v / 1000:.3f} s"


def _ci(r) -> str:
    if r.ci_low is None or pd.isna(r.ci_low):
        return "-"
    return f"{(r.ci_low - 1) * 100:+.1f} to {(r.ci_high - 1) * 100:+.1f}%"


# the terminal's verdict: one word and a number, never wrapped; the whole sentence is in the DataFrame and the report
SHORT = {"slower": "slower {:+.1%}", "faster": "faster {:+.1%}", "equivalent": "equivalent", "inconclusive":
         "inconclusive", "too few pairs": "too few pairs", "too few runs": "too few runs"}


def _verdicts(title: str, columns: list[str], *, fold: tuple[str, ...], drop: tuple[str, ...],
              right: tuple[str, ...] = ()) -> tuple[FitTable, list[str]]:
    """A verdict table that fits the terminal, its verdict always whole, and its footnotes: why a row is INVALID."""
    return _table(title, columns, fold=fold, drop=drop, right=right), []


def _short(r, notes: list[str]) -> str:
    """A row's verdict in a word (and its effect), or INVALID with the number of its footnote."""
    if not r.valid:
        notes.append(r.why_invalid)
        return f"[bold red]INVALID ({len(notes)})[/]"
    if r.kind not in SHORT:
        return _s(r.verdict)
    return SHORT[r.kind].format(r.ratio - 1) if r.kind in ("slower", "faster") else SHORT[r.kind]


def _caption(t: Table, notes: list[str], *lines: str) -> Table:
    t.caption = "\n".join([*lines, *(f"({n}) {_s(why)}" for n, why in enumerate(notes, 1))]) or None
    return t


def mode_table(comparison: pd.DataFrame, title: str = "Docker vs bare metal: the pair is the unit") -> Table:
    """The rich table the terminal shows after a sweep: one row per comparison, with its verdict."""
    arms = {(r.a, r.b) for r in comparison.itertuples()}
    one = len(arms) == 1  # A and B said once, in the title, when every row compares the same two
    a, b = next(iter(arms)) if one else ("A", "B")
    a, b = _s(a), _s(b) if b else b
    t, notes = _verdicts(f"{title} ({a} against {b})" if one and b else title,
                         ["board", "framework", "model", *([] if one else ["A", "B"]), f"{a} p50", f"{b or 'B'} p50",
                          "95% CI", "pairs", "verdict"], right=(f"{a} p50", f"{b or 'B'} p50", "pairs"),
                         fold=("board", "framework", "model", "A", "B"),
                         drop=("pairs", f"{b or 'B'} p50", f"{a} p50", "95% CI"))
    stopped: dict[str, list[str]] = {}
    for r in comparison.itertuples():
        t.add_row(_s(r.board), _s(r.framework), _s(r.model), *([] if one else [_s(r.a), _s(r.b or "-")]),
                  _ms(r.a_p50_ms),
                  _ms(r.b_p50_ms), _ci(r), str(r.pairs), _short(r, notes))
        if r.stop and r.stop != "-":
            stopped.setdefault(r.stop, []).append(r.cell)
    if len(stopped) == 1 and len(next(iter(stopped.values()))) > 1:  # the story said each cell's end already
        return _caption(t, notes, f"stopped by {_s(next(iter(stopped)))}: every cell")
    return _caption(t, notes, *(f"stopped by {_s(stop)}: "
                                + (_s(", ".join(cells)) if len(cells) <= 4 else f"{len(cells)} cells")
                                for stop, cells in stopped.items()))


def calibration_table(comparison: pd.DataFrame) -> Table:
    """The A/A test per board: noise floor, the interval reached and its width per minute, and the verdict,
    which must say equivalent or inconclusive (anything else is a false positive)."""
    t, notes = _verdicts("Calibration: each mode against itself (A/A)",
                         ["board", "framework", "model", "mode", "noise floor", "pairs", "CI ±", "timed min",
                          "± after 1 min", "minutes to ±1%", "verdict"], fold=("board", "framework", "model", "mode"),
                         drop=("timed min", "pairs", "CI ±", "± after 1 min", "noise floor", "minutes to ±1%"))
    for r in comparison.itertuples():
        if r.ci_low is None or pd.isna(r.ci_low):
            t.add_row(_s(r.board), _s(r.framework), _s(r.model), _s(r.a), "-", str(r.pairs), "-", "-", "-", "-",
                      _short(r, notes))
            continue
        half = r.half_width
        minutes = r.timed_s / 60
        per_minute = half * minutes ** 0.5  # the half-width shrinks as 1/sqrt(time)
        text = _short(r, notes)
        if r.valid and r.kind not in ("equivalent", "inconclusive"):
            text = f"[bold red]{text}[/]"
        t.add_row(_s(r.board), _s(r.framework), _s(r.model), _s(r.a.removesuffix("-A")), f"{r.noise:.2%}",
                  str(r.pairs),
                  f"±{half:.2%}", f"{minutes:.1f}", f"±{per_minute:.2%}", f"{(per_minute / 0.01) ** 2:.1f}", text)
    return _caption(t, notes)


def explain_table(comparison: pd.DataFrame) -> Table:
    """Each Docker knob's ratio to bare metal with its interval, and how much of the default gap it closes."""
    t, notes = _verdicts("Why Docker differs: one knob changed at a time, each against bare metal",
                         ["board", "arm", "ratio to bare", "95% CI", "gap closed", "verdict"],
                         fold=("board",), drop=("ratio to bare", "gap closed", "95% CI"))
    for (board, _), grp in comparison.groupby(["board", "cell"], sort=False):
        default = grp[grp["a"] == "docker"]
        # a share of a gap only where there is one: Docker's defaults judged slower or faster than bare
        real = len(default) and default["valid"].iloc[0] and default["kind"].iloc[0] in ("slower", "faster")
        gap = float(np.log(default["ratio"].iloc[0])) if real else None
        for r in grp.itertuples():
            closed = "-"
            if r.a.startswith("docker+") and gap and r.ratio is not None and not pd.isna(r.ratio):
                closed = f"{1 - np.log(r.ratio) / gap:.0%}"
            ratio = "-" if r.ratio is None or pd.isna(r.ratio) else f"{r.ratio:.3f}"
            t.add_row(_s(board), _s(r.a), ratio, _ci(r), closed, _short(r, notes))
    native = "native" in set(comparison["a"]) if len(comparison) else False
    return _caption(t, notes, "bare: the image's userland without a container. docker against bare is the "
                              "container's part of Docker's cost"
                    + ("; native (the board's own Python) against bare, the userland's part." if native else "."))


def zoo_table() -> Table:
    """The network zoo: parameters and MACs as built here, against the published figures."""
    t = Table(title="Network zoo (one PyTorch definition per network, seeded weights)")
    for col in ("network", "input", "params", "published", "GMACs", "published", "description"):
        t.add_column(col, justify="left" if col in ("network", "input", "description") else "right")
    for net in zoo.NETWORKS.values():
        model = zoo.build(net.name)
        params, macs = zoo.count_params(model), zoo.count_macs(model, net.input_shape)
        t.add_row(net.name, "x".join(map(str, net.input_shape)), f"{params / 1e6:.2f} M",
                  f"{net.published_params / 1e6:.2f} M", f"{macs / 1e9:.2f}", f"{net.published_macs / 1e9:.2f}",
                  net.description)
    return t


def matrix_table(recipes: dict) -> Table:
    """Framework x arch x Python: the version a board gets (and from where, when Debian packages it), or a numbered
    reason why none; and the framework's models. Reasons are listed once, under the table."""
    t = Table(title="Support matrix (from the recipes under images/): the version each board gets, by its Python",
              caption_justify="left")
    for col in ("framework", "model format", "arch", *(f"Python {py}" for py in PYTHONS)):
        t.add_column(col)
    reasons: list[str] = []

    def gap(why: str) -> str:
        if why not in reasons:
            reasons.append(why)
        return f"[red]✗[/] ({reasons.index(why) + 1})"

    for r in recipes.values():
        for i, arch in enumerate(Arch):
            first = (r.framework, r.model_format) if not i else ("", "")
            if arch not in r.arches:
                t.add_row(*first, arch.value, gap(r.why_not(arch)), *[""] * (len(PYTHONS) - 1))
                continue
            cells = []
            for py in PYTHONS:
                build = next((b for b in r.builds if arch in b.arches and (not b.pythons or py in b.pythons)), None)
                if build is None:
                    cells.append(gap(r.why_not(arch, py, "")))
                else:
                    cells.append(f"[green]{build.version}[/]"
                                 + (f" (Debian {'/'.join(build.releases)})" if build.releases else ""))
            t.add_row(*first, arch.value, *cells)
    formats = sorted({r.model_format for r in recipes.values()})
    t.caption = "\n".join([f"({n}) {why}" for n, why in enumerate(reasons, 1)]
                          + ["", "Models of the zoo by format (or give a path to your own file):"]
                          + [f"  {f}: {', '.join(zoo_models(f))}" for f in formats])
    return t


_STATUS_STYLE = {"runs": "green", "via": "green", "successor": "yellow", "not run": "red"}


def systems_table(systems, recipes: dict) -> Table:
    """Every system the seed papers measured, the papers that did, and how edgeorch stands to it: the frameworks that
    run it, reach it or run its successor (one without a recipe is marked so), or none; each row's numbered note (how,
    or why not, with its sources) under the table, as matrix_table's reasons are."""
    t = Table(title="Systems of the seed papers (images/systems.toml): how edgeorch runs each", caption_justify="left")
    for col in ("system", "kind", "measured by", "edgeorch"):
        t.add_column(col)
    notes = []
    for n, s in enumerate(systems.systems, 1):
        frameworks = ", ".join(f if f in recipes else f"{f} (no recipe)" for f in s.frameworks)
        t.add_row(_s(s.name), _s(s.kind), _s(", ".join(s.papers) or "-"),
                  f"[{_STATUS_STYLE[s.status]}]{_s(s.status)}[/]" + (f": {_s(frameworks)}" if frameworks else "")
                  + f" ({n})")
        notes.append(f"({n}) {_s(s.how)}" + (f" (sources: {_s(', '.join(s.sources))})" if s.sources else ""))
    t.caption = "\n".join([*notes, "", "Papers:", *(f"  {_s(k)}: {_s(v)}" for k, v in systems.papers.items())])
    return t


def framework_table(runs: pd.DataFrame) -> Table:
    """Frameworks side by side per board and model: median latency per mode, and agreement with PyTorch."""
    modes = [m for m in ("docker", "bare", "native") if m in set(runs["mode"]) or m != "native"]
    p50s = tuple(f"{m} p50" for m in modes)
    t = _table("Frameworks side by side: median of the runs' p50 latency, agreement with PyTorch",
               ["board", "model", "framework", "version", "precision", *p50s, "max |diff|",
                "top-1 = PyTorch"], right=p50s, fold=("board", "model", "precision"),
               drop=("max |diff|", "version"))
    for (board, model, framework, threads, batch), grp in runs.groupby(["board", "model", "framework", "threads",
                                                                         "batch"], sort=True):
        model = label(model, threads, batch)
        p50 = grp.groupby("mode")["p50_ms"].median()
        checked = grp["agrees"].dropna()
        agree = "-" if checked.empty else ("[green]yes[/]" if checked.all() else "[bold red]NO[/]")
        diff = grp["max_abs_diff"].max()
        t.add_row(_s(board), _s(model), _s(framework), _s(grp["framework_version"].iloc[0]),
                  _s(grp["precision"].iloc[0]), *(_ms(p50.get(m)) for m in modes),
                  "-" if pd.isna(diff) else f"{diff:.2e}",
                  agree if checked.empty or checked.all() else f"{agree} ({_s(', '.join(map(str, grp['top1'])))})")
    return t


def _num(value, fmt: str) -> str:
    return "-" if value is None or pd.isna(value) else format(value, fmt)


def measures_table(runs: pd.DataFrame) -> Table:
    """Beside latency, per cell and mode (medians of the runs): throughput, CPU time and IPC per inference (perf),
    the timed phase's memory peak and the container's, energy per inference and power; '-' where not measured."""
    columns = ["board", "framework", "model", "mode", "p50", "images/s", "CPU ms/inf", "IPC", "peak RSS", "cgroup peak",
               "mJ/inf", "W (idle)"]
    t = _table("Beside latency: medians of the runs ('-': unavailable, reasons below)", columns,
               right=tuple(columns[4:]), fold=("board", "framework", "model"),
               drop=("IPC", "W (idle)", "cgroup peak", "CPU ms/inf", "peak RSS", "mJ/inf", "images/s"))
    for (_, mode), grp in runs.groupby(["cell", "mode"], sort=False):
        r = grp.iloc[0]
        med = grp.median(numeric_only=True)
        power = "-" if pd.isna(med["avg_power_w"]) else f"{med['avg_power_w']:.2f} ({_num(med['idle_power_w'], '.2f')})"
        t.add_row(_s(r.board), _s(r.framework), _s(label(r.model, r.threads, r.batch)), _s(mode),
                  _ms(med["p50_ms"]), _num(med["throughput_ips"], ".1f"), _num(med["cpu_ms_per_inf"], ".3f"),
                  _num(med["ipc"], ".2f"), _num(med["peak_rss_timed_mb"], ".0f") + " MB",
                  _num(med["cgroup_peak_mb"], ".0f") + (" MB" if not pd.isna(med["cgroup_peak_mb"]) else ""),
                  _num(med["energy_mj"], ".3g"), power)
    return t


def unavailable_notes(runs: pd.DataFrame) -> list[str]:
    """Why a figure is missing, once per board and mode (once for the boards that lack it alike): perf's events the
    board lacks, the energy source."""
    notes: dict[str, list[str]] = {}  # a note -> the boards (and modes) it holds for
    for board, runs_of in runs.groupby("board", sort=True):
        said: dict[str, list[str]] = {}  # a note -> the modes it holds for
        for mode, grp in runs_of.groupby("mode", sort=True):
            counters = {}
            for text in grp["counters_unavailable"].dropna():
                counters.update(json.loads(text))
            reasons = sorted(set(counters.values()))
            if reasons:
                events = "all events" if "*" in counters else ", ".join(sorted(counters))
                said.setdefault(f"counters unavailable ({events}): {'; '.join(reasons)}", []).append(mode)
            for reason in sorted(set(grp["energy_unavailable"].dropna())):
                said.setdefault(f"energy unavailable: {reason}", []).append(mode)
        modes = runs_of["mode"].nunique()
        for note, m in said.items():
            notes.setdefault(note, []).append(f"{board}{'' if len(m) == modes else ' ' + ', '.join(m)}")
    return [f"{', '.join(where)}: {note}" for note, where in notes.items()]


def sweep_table(runs: pd.DataFrame) -> Table:
    """The latency-throughput trade-off (Hanhirova et al.): per board, framework, model and mode, each threads x
    batch cell's median p50 latency and throughput."""
    t = _table("Sweep: latency against throughput (medians of the runs)",
               ["board", "framework", "model", "mode", "threads", "batch", "p50", "p99", "images/s"],
               right=("threads", "batch", "p50", "p99", "images/s"), fold=("board", "framework", "model"),
               drop=("p99",))
    keys = ["board", "framework", "model", "mode", "threads", "batch"]
    for (board, framework, model, mode, threads, batch), grp in runs.groupby(keys, sort=True):
        t.add_row(_s(board), _s(framework), _s(model), _s(mode), str(threads or "default"), str(batch),
                  _ms(grp["p50_ms"].median()),
                  _ms(grp["p99_ms"].median()), f"{grp['throughput_ips'].median():.1f}")
    return t


def ops_top(ops: pd.DataFrame, top: int = 5) -> Table:
    """Where the time goes: each profiling pass's `top` operators by time, with their share."""
    t = Table(title=f"Where the time goes: the top {top} operators of each profiling pass")
    for col in ("board", "framework", "model", "mode", "op type", "op name", "ms/inf", "share"):
        t.add_column(col, justify="right" if col in ("ms/inf", "share") else "left")
    for _, grp in ops[ops["rank"] <= top].groupby(["cell", "mode"], sort=False):
        for r in grp.sort_values("rank").itertuples():
            t.add_row(_s(r.board), _s(r.framework), _s(label(r.model, r.threads, r.batch)), _s(r.mode),
                      _s(r.op_type), _s(r.op_name),
                      f"{r.time_ms:.3f}", f"{r.share:.1%}")
    return t


def change_table(changes: pd.DataFrame, before: str, after: str) -> Table:
    """results.compare in the terminal: each matched cell's change from one run to the other, with its verdict."""
    t, notes = _verdicts(f"From run {_s(before)} to run {_s(after)}: the run is the unit",
                         ["board", "framework", "model", "arm", "before p50", "after p50", "95% CI", "runs",
                          "verdict"], right=("before p50", "after p50", "runs"),
                         fold=("board", "framework", "model", "arm"),
                         drop=("runs", "before p50", "after p50", "95% CI"))
    for r in changes.itertuples():
        text = _short(r, notes)
        if r.valid and r.kind in ("slower", "faster"):
            text = ("[bold red]regression[/] " if r.kind == "slower" else "[green]improvement[/] ") + text.split()[1]
        t.add_row(_s(r.board), _s(r.framework), _s(r.model), _s(r.arm), _ms(r.before_p50_ms), _ms(r.after_p50_ms),
                  _ci(r),
                  f"{r.runs_before}/{r.runs_after}", text)
    differs = sorted({d for d in changes["differs"] if d})
    shifts = sorted({f"±{r.session_sd:.1%} {r.session_from}" for r in changes.itertuples()})
    return _caption(t, notes, f"a run's own shift as a whole (in every interval): {', '.join(shifts)}",
                    *(f"what differs: {_s(d)}" for d in differs))


def run_notes(runs: pd.DataFrame) -> list[str]:
    """The lines under a sweep's tables (markup, external strings escaped): what was not measured and why, the
    sensor sampler's measured cost, retried runs, throttled runs and outputs that do not reproduce PyTorch's."""
    lines = [f"  {_s(note)}" for note in unavailable_notes(runs)]  # one line to grep, however wide
    cost = runs["sampler_cost"].dropna()
    if len(cost):  # the watcher's price, measured in the runs themselves: on-windows against off-windows
        lines.append(f"sensor sampler cost: median {cost.median():+.2%} of latency over {len(cost)} runs"
                     + (" [bold red](above 0.5%)[/]" if cost.median() > 0.005 else ""))
    lines += [_s(f"note: {r.board} {r.arm} run #{r.pair} took {r.attempts} attempts (the connection dropped)")
              for r in runs[runs["attempts"] > 1].itertuples()]
    lines += ["[bold red]warning:[/] " + _s(f"{r.board} {r.arm} run #{r.pair} was throttled ({r.throttle_evidence}); "
                                            "its cell is invalid")
              for r in runs[runs["throttled"].fillna(False)].itertuples()]
    lines += ["[bold red]warning:[/] " + _s(f"{r.board} {r.framework} {r.mode} does not reproduce PyTorch's {r.model}: "
                                            f"max |diff| {r.max_abs_diff:.3g}, top-1 {r.top1} (PyTorch {r.top1_ref})")
              for r in runs[runs["agrees"].eq(False).fillna(False)].itertuples()]
    return lines


def run_tables(runs: pd.DataFrame, comparison: pd.DataFrame, *, references: bool) -> list[Table]:
    """A sweep's tables: the verdicts, the measures beside latency, the threads x batch sweep and the frameworks side
    by side where the sweep has them."""
    tables = [mode_table(comparison), measures_table(runs)]
    if runs.groupby(GROUP)[["threads", "batch"]].nunique().max(axis=None) > 1:
        tables.append(sweep_table(runs))
    if references or runs["framework"].nunique() > 1:
        tables.append(framework_table(runs))
    return tables
