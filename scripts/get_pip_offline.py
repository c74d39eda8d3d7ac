"""Stand-in for the pip bootstrap script that ansible-test downloads from a host we cannot reach.

ansible-test runs it with the interpreter of each new per-test virtual environment and the
options of a pip install (ending with ``pip==<version>``). We install Python's bundled pip with
ensurepip, then let that pip install the requested version from the package index.
"""
import ensurepip
import os
import subprocess
import sys

IGNORED = {"--no-setuptools", "--no-wheel"}

saved_environment = dict(os.environ)
ensurepip.bootstrap(upgrade=True)
# ensurepip points PIP_CONFIG_FILE at /dev/null; the real install must see the machine's pip config
# (index, certificates), so give the child the environment we were started with.
args = [arg for arg in sys.argv[1:] if arg not in IGNORED]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args, env=saved_environment))
