"""Fixtures for stack runner and drift tests: real Terraform on generated repositories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from stack_helpers import Recorder

from shipsure.stacks.terraform import locate_binary


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    return locate_binary("terraform")


@pytest.fixture(scope="session")
def plugin_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plugin-cache")


@pytest.fixture
def webhook() -> Iterator[Recorder]:
    with Recorder() as recorder:
        yield recorder
