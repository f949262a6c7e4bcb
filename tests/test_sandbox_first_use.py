"""Several first runs at once on a new data folder: each creates the sandbox tables and seeds the
demo customers; all of them must succeed and the customers exist once (they raced: one failed
with "table already exists" or a duplicate customer)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sqlmodel import select

from tools.sandbox.models import SandboxUser
from tools.sandbox.seed import DEMO_USERS
from tools.sandbox.store import SandboxStore

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import sys, time
from agent.db import make_engine
from tools.sandbox.seed import seed_demo
from tools.sandbox.store import SandboxStore
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # start together
seed_demo(SandboxStore(make_engine(sys.argv[1])))
"""


def test_first_uses_at_once_all_succeed_and_seed_once(tmp_path):
    from agent.db import make_engine

    for round_ in range(4):
        url = f"sqlite:///{tmp_path / f'sandbox{round_}.db'}"
        start = time.time() + 1.5  # after every child has imported
        children = [subprocess.Popen([sys.executable, "-c", CHILD, url, str(start)], cwd=ROOT, stderr=subprocess.PIPE, text=True) for _ in range(3)]
        for child in children:
            assert child.wait(timeout=120) == 0, child.stderr.read()[-2000:]
        with SandboxStore(make_engine(url)).session() as session:
            assert len(session.exec(select(SandboxUser)).all()) == len(DEMO_USERS)
