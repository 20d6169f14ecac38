"""Every test writes its runs under a results directory of its own session, never into the checkout's results/:
that history is the user's. It is removed after a session that passed, and named after one that did not."""

import os
import shutil
import tempfile

os.environ["EDGEORCH_RESULTS"] = tempfile.mkdtemp(prefix="edgeorch-test-results-")
# The tasks' tables as a piped run prints them, whatever width the calling shell exports (CI's says 80).
os.environ["COLUMNS"] = "160"


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0:
        shutil.rmtree(os.environ["EDGEORCH_RESULTS"], ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus):
    if exitstatus != 0:
        terminalreporter.write_line(f"the runs of this session are kept in {os.environ['EDGEORCH_RESULTS']}")
