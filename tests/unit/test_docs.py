"""The docs a newcomer reads: the task reference matches tasks.py, the README stays short, and no link is broken."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference" / "tasks.md"
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def collection():
    sys.path.insert(0, str(ROOT))
    try:
        import tasks
    finally:
        sys.path.remove(str(ROOT))
    return tasks.ns


def _sections(text: str) -> dict[str, str]:
    """The reference's text under each `## invoke NAME` heading, by task name."""
    parts = re.split(r"^## `invoke ([\w.-]+)`$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_the_task_reference_is_what_the_generator_makes_now():
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEORCH_")}
    done = subprocess.run([sys.executable, "docs/make_reference.py", "--check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (
        "docs/reference/tasks.md is out of date with tasks.py: run `python docs/make_reference.py`\n"
        + done.stdout[-3000:] + done.stderr[-2000:])


def test_every_task_and_every_option_is_in_the_reference(collection):
    sections = _sections(REFERENCE.read_text())
    missing = []
    for name in collection.task_names:
        if name not in sections:
            missing.append(f"task {name}")
            continue
        for arg in collection[name].get_arguments():
            long = next((n for n in arg.names if len(n) > 1), arg.names[0]).replace("_", "-")
            if not re.search(r"--(\[no-\])?" + re.escape(long) + r"(?![\w-])", sections[name]):
                missing.append(f"{name} --{long}")
            if arg.help and " ".join(arg.help.split()).replace("|", "\\|") not in sections[name].replace("\\<", "<"):
                missing.append(f"{name} --{long}: its help text")
    assert not missing, f"not in docs/reference/tasks.md: {missing}; run `python docs/make_reference.py`"
    assert set(sections) == set(collection.task_names), "the reference names a task that tasks.py has not"


def test_the_readme_is_one_or_two_screens():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 150, f"README.md has {len(lines)} lines: move the detail into docs/"
    long = [i + 1 for i, line in enumerate(lines) if len(line) > 200]
    assert not long, f"README.md lines over 200 characters: {long}"


def _anchors(path: Path) -> set[str]:
    """The anchors a Markdown file offers: GitHub's slugs of its headings and its explicit <a id>s."""
    text = path.read_text()
    text_outside_code = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
             for h in re.findall(r"^#{1,6} (.+)$", text_outside_code, flags=re.M)}
    return slugs | set(re.findall(r'<a id="([^"]+)"', text))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file_that_exists(doc):
    broken = []
    for target in LINK.findall(re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.M | re.S)):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, fragment = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(target)
        elif fragment and file.suffix == ".md" and fragment not in _anchors(file):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{doc.relative_to(ROOT)} links to what does not exist: {broken}"


def test_the_readme_tests_with_the_command_ci_runs():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))]
    assert len(ci) == 1, f".ci/run should run one command, runs {ci}"
    readme = (ROOT / "README.md").read_text()
    quick_start = re.search(r"## Quick start\n+```sh\n(.*?)```", readme, flags=re.S)
    assert quick_start, "README.md has no quick start code block"
    commands = [shlex.split(line.split("#")[0]) for line in quick_start.group(1).splitlines() if line.strip()]
    assert len(commands) == 2, f"the quick start should be two commands, is {commands}"
    test_command, ci_command = commands[1], shlex.split(ci[0])
    assert test_command[0] == ci_command[0] and set(test_command[1:]) <= set(ci_command[1:]), (
        f"README.md runs the tests with {test_command}, .ci/run with {ci_command}")
    assert f"`{ci[0]}`" in readme, f"README.md should say that CI runs `{ci[0]}`"
