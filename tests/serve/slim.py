"""Serving an exported bundle as the image would: a process that can import only the standard library, Conveyor
and the packages the export's requirements.txt installs (tests/serve/slim_site/sitecustomize.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import httpx

from tests.conftest import wait_until

SITE = Path(__file__).parent / "slim_site"


def image_modules(requirements: Path) -> list[str]:
    """The top-level modules of the packages a requirements.txt installs (Conveyor itself aside)."""
    names = set()
    for line in requirements.read_text().splitlines():
        if line.strip() and not line.startswith("#") and not line.startswith("conveyor-ml"):
            names.add(re.split(r"[=<>!~;@ \[]", line.strip(), maxsplit=1)[0].lower().replace("_", "-"))
    owners = metadata.packages_distributions()
    return sorted(m for m, dists in owners.items() if {d.lower().replace("_", "-") for d in dists} & names)


@contextmanager
def serving_like_the_image(export: Path, keys: str) -> Iterator[str]:
    """Serve ``export``'s bundle (a `conveyor export docker` folder) in a process restricted to the image's
    packages; yields its base URL once every model is loaded and warmed up."""
    bundle = export / "bundle"
    env = {
        **os.environ,
        "CONVEYOR_ENDPOINT_KEYS": keys,
        "CONVEYOR_WORKERS": "1",
        "PYTHONPATH": str(SITE),
        "SLIM_ALLOWED": json.dumps(image_modules(export / "requirements.txt")),
    }
    env.pop("CONVEYOR_HOME", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor.serve", "--bundle", str(bundle), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=export,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, process.stderr.read().decode() if process.stderr else ""
        url = f"http://127.0.0.1:{json.loads(line)['port']}"
        wait_until(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200, 120, what="ready")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(export / "__pycache__", ignore_errors=True)
