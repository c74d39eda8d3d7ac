"""Runs playbooks and modules of this collection through the real ansible-playbook (test helper)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    tasks: List[Dict[str, Any]]

    def result(self, name: str) -> Dict[str, Any]:
        """The localhost result of the task called ``name``."""
        for task in self.tasks:
            if task["task"]["name"] == name:
                return task["hosts"]["localhost"]
        raise KeyError("no task named %r in %s" % (name, [t["task"]["name"] for t in self.tasks]))


def _collections_path() -> str:
    # tests/conftest.py links the working tree there, so tests run what is checked out.
    return os.path.join(ROOT, "build", "dev")


def run_playbook(playbook: str, extra_vars: Optional[Dict[str, Any]] = None, check: bool = False,
                 diff: bool = False, env: Optional[Dict[str, str]] = None, timeout: int = 600) -> PlaybookRun:
    cmd = [os.path.join(BIN, "ansible-playbook"), playbook]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    run_env = dict(os.environ)
    run_env.update({
        "ANSIBLE_COLLECTIONS_PATH": _collections_path(),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": BIN + os.pathsep + run_env.get("PATH", ""),
    })
    run_env.update(env or {})
    proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=timeout, cwd=ROOT, check=False,
                          # a fresh /dev/null: Ansible refuses a stdin that another process made non-blocking
                          stdin=subprocess.DEVNULL)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("ansible-playbook printed no JSON (rc=%s)\nstdout:\n%s\nstderr:\n%s"
                             % (proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:]))
    tasks = [t for play in data.get("plays", []) for t in play.get("tasks", [])]
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, tasks)


def run_module(module: str, args: Dict[str, Any], tmp_path, check: bool = False, diff: bool = False,
               register_name: str = "the module") -> PlaybookRun:
    """Runs one module task in a generated playbook on localhost."""
    playbook = [{
        "name": "run %s" % module,
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "tasks": [{"name": register_name, module: args, "ignore_errors": True}],
    }]
    path = tmp_path / ("play-%d.yml" % len(list(tmp_path.glob("play-*.yml"))))
    path.write_text(yaml.safe_dump(playbook, sort_keys=False))
    return run_playbook(str(path), check=check, diff=diff)


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()
