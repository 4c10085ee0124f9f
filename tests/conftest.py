"""Shared fixtures.

Real data is found through one setting, MFRAY_DATA (default ../shared/data beside the repository
root). Tests that need it take the `data_dir` fixture. CI always has the data, so where the folder
is missing those tests FAIL (an error at setup) with where it looked and how to point MFRAY_DATA at
it: a silently skipped data test would hide a broken checkout or a mistyped path.

Opt-out, for running the suite without the data on purpose: MFRAY_SKIP_DATA_TESTS=1 skips every
test that takes `data_dir`, with a reason that names the variable (whether or not the data is
there). Any other value but "", "0", "false" or "no" counts as set.

GPU tests (tests/gpu) skip without a CUDA device; that is a property of the machine, not of the
checkout, and is unaffected by the above."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SKIP_DATA_ENV = "MFRAY_SKIP_DATA_TESTS"


def data_root() -> Path:
    return Path(os.environ.get("MFRAY_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


def skip_data_tests() -> bool:
    return os.environ.get(SKIP_DATA_ENV, "").strip().lower() not in ("", "0", "false", "no")


def missing_data_message(path: Path, what: str = "real data folder") -> str:
    source = (f"from MFRAY_DATA={os.environ['MFRAY_DATA']!r}" if "MFRAY_DATA" in os.environ
              else "MFRAY_DATA is not set; the default is ../shared/data beside the repository root")
    return (f"{what} not found at {path} ({source}). Point MFRAY_DATA at the shared data folder "
            f"(the one holding twitter_rumdect/, weibo_rumdect/ and labels/), e.g. "
            f"MFRAY_DATA=/path/to/shared/data; or set {SKIP_DATA_ENV}=1 to skip the tests that need it.")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if skip_data_tests():
        pytest.skip(f"{SKIP_DATA_ENV} is set: tests that need the real data (MFRAY_DATA) are skipped")
    root = data_root()
    if not root.is_dir():
        pytest.fail(missing_data_message(root), pytrace=False)
    return root
