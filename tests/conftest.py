import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", default=False,
        help="rewrite tests/golden/* from the current output instead of comparing with them",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when the run was started with --update-golden (``make golden``)."""
    return bool(request.config.getoption("--update-golden"))
