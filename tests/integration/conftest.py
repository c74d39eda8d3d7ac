"""Fixtures of the integration tests."""

from typing import Any, Dict

import pytest

from playbook_runner import run_module


@pytest.fixture
def module_runner(tmp_path):
    def runner(module: str, args: Dict[str, Any], **kwargs):
        return run_module(module, args, tmp_path, **kwargs).result(kwargs.get("register_name", "the module"))
    return runner
