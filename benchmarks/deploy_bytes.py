"""What a deploy sends against what the board lacked, on a board of the simulated fleet, case by case: a first
deploy, the same again, a comment-only change of board-side code, and a second framework on the same arch. Then
the archive's compression: gzip, zstd and none side by side, each made here, sent to the board and loaded there.

    .venv/bin/python benchmarks/deploy_bytes.py [--host x86] [--frameworks tflite,onnxruntime] [--no-codecs]
    .venv/bin/python benchmarks/deploy_bytes.py --first-deploy [--checkout DIR]

--first-deploy times instead a first deploy of each framework of the shipped inventory (tflite, onnxruntime,
opencv, litert) to the three bookworm boards (rpi3-bookworm, rpi4, x86), side by side where a framework runs on
several, each board wiped first; with --checkout, by the code of another checkout (e.g. a worktree of an older
commit), for a before/after comparison. Images are built first and not timed.

It removes edgeorch's images and bundles from the board first (the board is the simulated one: `invoke sim.up`).
The code-change case appends a comment to a board-side file of this checkout and takes it out again afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeorch import deploy, images, targets  # noqa: E402
from edgeorch.console import REPORTER, console  # noqa: E402
from edgeorch.inventory import load_inventory  # noqa: E402
from edgeorch.recipes import get_recipe  # noqa: E402
from edgeorch.transport import connect, remote, sh, transfer_timeout  # noqa: E402

# A deploy in a process of its own, so that a change of the board-side code is seen as a user's next command sees it
DEPLOY = """
import json, sys
from edgeorch import pipeline
from edgeorch.inventory import load_inventory
try:  # the reporter a task hands in, since the flows were split (older code prints itself)
    from edgeorch.console import REPORTER
    out = (REPORTER,)
except ImportError:
    out = ()
group = pipeline.deploy_boards(load_inventory(sys.argv[1]), sys.argv[2], *out, [sys.argv[3]])
print("EDGEORCH-JSON " + json.dumps([d.summary() for ds in group.succeeded.values() for d in ds]))
"""

# Every image (and its export) the first deploys need, by the code on PYTHONPATH, so that they time deploys only
BUILD = """
import json, sys
from edgeorch import pipeline
from edgeorch.inventory import load_inventory
from edgeorch.recipes import get_recipe
try:  # the build steps have a module of their own since the flows were split
    from edgeorch import targets as steps
    from edgeorch.console import REPORTER
    out = {"out": REPORTER}
except ImportError:
    steps, out = pipeline, {}
fleet = load_inventory(sys.argv[1])
for framework, host in json.loads(sys.argv[2]).items():
    boards = fleet.select(host)
    modes = {framework: getattr(pipeline, "MODE_SETS", {}).get("both", ("docker", "bare"))}
    steps.build(steps.plan_targets([get_recipe(framework)], boards, steps.platforms(boards).succeeded, modes),
                **out, **({"bare": (framework,)} if hasattr(steps, "Built") else {}))
"""

EDITED = ROOT / "edgeorch" / "bench" / "adapters" / "base.py"
LINKS = {"Pi 3 Ethernet (11.8 MB/s)": 11.8e6, "Wi-Fi (3 MB/s)": 3e6}


def run_deploy(inventory: Path, host: str, framework: str) -> dict:
    r = subprocess.run([sys.executable, "-c", DEPLOY, str(inventory), host, framework], cwd=ROOT,
                       capture_output=True, text=True, timeout=3600)
    line = next((x for x in r.stdout.splitlines() if x.startswith("EDGEORCH-JSON ")), None)
    if r.returncode or line is None:
        sys.exit(f"deploy of {framework} to {host} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    [summary] = json.loads(line.removeprefix("EDGEORCH-JSON "))
    return summary


def wipe(board, frameworks: list[str]) -> None:
    """No edgeorch image, bare bundle, watcher or archive on the board: what a new board has."""
    with connect(board) as conn:
        workdir = deploy.prepare_workdir(conn, board)
        remote(conn, sh('ids=$(docker image ls -q --filter "label=$1" | sort -u); '
                        '[ -z "$ids" ] || docker image rm --force $ids >/dev/null', images.LABEL), board=board.name)
        remote(conn, sh('cd -- "$1" && rm -rf -- host *.partial edgeorch-*.tar* "$@"', workdir,
                        *[f"{f}-*" for f in frameworks]), board=board.name)


def wipe_framework(board, framework: str) -> None:
    with connect(board) as conn:
        workdir = deploy.prepare_workdir(conn, board)
        remote(conn, sh('ids=$(docker image ls -q --filter "label=$1.framework=$2" | sort -u); '
                        '[ -z "$ids" ] || docker image rm --force $ids >/dev/null', images.LABEL, framework),
               board=board.name)
        remote(conn, sh('rm -rf -- "$1"/"$2"-*', workdir, framework), board=board.name)


def mb(n: float) -> str:
    return f"{n / 1e6:.3f}" if n < 1e7 else f"{n / 1e6:.1f}"


def cases(inventory: Path, board, first: str, second: str) -> list[tuple[str, dict, str, bool]]:
    """(case, deploy summary, target, met) for each case."""
    wipe(board, [first, second])
    out = []
    a = run_deploy(inventory, board.name, first)
    out.append((f"first deploy of {first}", a, "sent / lacking <= 1.05", a["sent_bytes"] <= 1.05 * a["lacked_bytes"]))
    b = run_deploy(inventory, board.name, first)
    out.append((f"{first} again", b, "sends nothing", b["sent_bytes"] == 0))
    original = EDITED.read_text()
    try:
        EDITED.write_text(original + "# a comment-only change, made by benchmarks/deploy_bytes.py\n")
        c = run_deploy(inventory, board.name, first)
    finally:
        EDITED.write_text(original)
    out.append(("board-side code: a comment changed", c, "under 1% of the image",
                c["sent_bytes"] < 0.01 * c["image_bytes"]))
    wipe_framework(board, second)
    d = run_deploy(inventory, board.name, second)
    sent, of = next((i["layers"] for i in d["items"] if i["what"] == "image"), (0, 0))
    out.append((f"then {second}, same arch ({sent} of {of} layers)", d, "the base is not sent again",
                0 < sent < of))
    return out


def print_cases(rows) -> bool:
    console.print("\n[bold]Deploy bytes on the simulated board[/] (MB; sent over SSH, lacked by the board)")
    console.print(f"{'case':<44} {'sent':>9} {'lacking':>9} {'image':>8} {'sent/lack':>9} {'sent/image':>10}  target")
    ok = True
    for case, s, target, met in rows:
        ratio = s["sent_bytes"] / s["lacked_bytes"] if s["lacked_bytes"] else 0.0
        share = s["sent_bytes"] / s["image_bytes"]
        met = met and (ratio <= 1.05)
        ok &= met
        console.print(f"{case:<44} {mb(s['sent_bytes']):>9} {mb(s['lacked_bytes']):>9} {mb(s['image_bytes']):>8} "
                      f"{ratio:>9.3f} {share:>10.2%}  {target}: {'[green]met[/]' if met else '[red]NOT MET[/]'}")
        for item in s["items"]:
            label = f"{item['what']} ({item['layers'][0]} of {item['layers'][1]} layers)" if item["layers"] \
                else item["what"]
            console.print(f"    {label:<40} {mb(item['sent']):>9} {mb(item['lacked']):>9}")
    return ok


def codecs(board, framework: str) -> None:
    """Each codec's archive of the whole image: made here, sent, checked and loaded by the board's engine."""
    client = images.engine()
    spec = next(made.image for made in targets.build(targets.plan_targets(
        [get_recipe(framework)], [board], targets.platforms([board]).succeeded), REPORTER).values())
    layers = images.export_image(client, spec)
    console.print(f"\n[bold]Compression of the whole {framework} image[/] ({mb(layers.size)} MB of layers): made "
                  "here, sent over SSH to the simulated board, `docker load`ed there")
    head = f"{'codec':<10} {'MB':>7} {'ratio':>6} {'make s':>7} {'MB/s':>6} {'send s':>7} {'load s':>7}"
    console.print(head + "".join(f"  {name:>26}" for name in LINKS))
    for codec, level in (("gzip", 1), ("gzip", 6), ("zstd", 3), ("none", 0)):
        for old in (images.cache_dir() / "exports").glob(f"edgeorch-*{images.SUFFIX[codec]}"):
            old.unlink()  # made afresh, so that its time is measured
        t = time.perf_counter()
        archive = images.layer_archive(layers, 0, codec, level)
        make = time.perf_counter() - t
        size = archive.stat().st_size
        wipe(board, [framework])
        with connect(board) as conn:
            workdir = deploy.prepare_workdir(conn, board)
            t = time.perf_counter()
            deploy._put(conn, board, archive, f"{workdir}/{archive.name}", None, archive.name)
            send = time.perf_counter() - t
            t = time.perf_counter()
            loaded = remote(conn, sh('docker load -i "$1"; s=$?; rm -f -- "$1"; exit $s', f"{workdir}/{archive.name}"),
                            board=board.name, warn=True, timeout=transfer_timeout(4 * size))  # unpacked: larger
            load = time.perf_counter() - t
        # over a link of `rate`: made once for the fleet, then the link, then the board's engine unpacking it
        links = "".join(f"  {make + size / rate + load:>20.1f} s total" if loaded.ok else f"  {'-':>28}"
                        for rate in LINKS.values())
        console.print(f"{codec + ' -' + str(level) if codec != 'none' else 'none':<10} {mb(size):>7} "
                      f"{layers.size / size:>6.2f} {make:>7.1f} {layers.size / 1e6 / max(make, 1e-9):>6.0f} "
                      f"{send:>7.1f} {load if loaded.ok else float('nan'):>7.1f}{links}"
                      + ("" if loaded.ok else f"  [red]docker load refused it: {loaded.stderr.strip()[-120:]}[/]"))
        archive.unlink()
    console.print(f"edgeorch uses {deploy.CODEC} (deploy.CODEC). The board's unpacking is timed on the simulated "
                  "board's engine, which runs natively on this host even for an ARM board: a Raspberry Pi's CPU "
                  "unpacks more slowly, which only a real board shows.")


FIRST = {"tflite": "rpi3-bookworm,rpi4,x86", "onnxruntime": "rpi4,x86", "opencv": "rpi4,x86", "litert": "rpi4,x86"}


def first_deploy(inventory: Path, checkout: Path, frameworks: list[str]) -> None:
    """Wall time of `invoke deploy` of each framework to wiped boards, by `checkout`'s code, images built first."""
    first = {f: FIRST[f] for f in frameworks}
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    invoke = [str(Path(sys.executable).parent / "invoke"), "-r", str(checkout)]
    fleet = load_inventory(inventory)
    subprocess.run([sys.executable, "-c", BUILD, str(inventory), json.dumps(first)], env=env, check=True,
                   timeout=7200)
    total = 0.0
    console.print(f"\n[bold]First deploy[/] by {checkout} (images built beforehand; boards wiped before each)")
    for board in fleet.select("rpi3-bookworm,rpi4,x86"):
        wipe(board, list(FIRST))
    for framework, host in first.items():
        t = time.perf_counter()
        r = subprocess.run([*invoke, "deploy", "--inventory", str(inventory), "--host", host, "--framework",
                            framework], env=env, capture_output=True, text=True, timeout=7200)
        took = time.perf_counter() - t
        total += took
        if r.returncode:
            sys.exit(f"deploy of {framework} failed:\n{r.stdout[-3000:]}")
        console.print(f"{framework:<12} to {host:<24} {took:>7.1f} s")
    console.print(f"{'all':<12} {'':<27} {total:>7.1f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="x86", help="a simulated board (default x86)")
    p.add_argument("--frameworks", default="tflite,onnxruntime", help="the first and the second framework")
    p.add_argument("--inventory", default=str(ROOT / "inventory.yaml"))
    p.add_argument("--no-codecs", action="store_true", help="skip the compression comparison")
    p.add_argument("--first-deploy", action="store_true", help="time a first deploy of each framework instead")
    p.add_argument("--checkout", default=str(ROOT), help="the checkout whose code --first-deploy runs")
    p.add_argument("--first-frameworks", default=",".join(FIRST), help="the frameworks --first-deploy deploys")
    args = p.parse_args()
    inventory = Path(args.inventory).resolve()
    if args.first_deploy:
        return first_deploy(inventory, Path(args.checkout).resolve(), args.first_frameworks.split(","))
    [board] = load_inventory(inventory).select(args.host)
    first, second = args.frameworks.split(",")
    ok = print_cases(cases(inventory, board, first, second))
    if not args.no_codecs:
        codecs(board, first)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
