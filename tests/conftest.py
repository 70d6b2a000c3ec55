import os

from iavicenne.ice import ADDRESSES_VARIABLE

pytest_plugins = ["pytest_jupyter.jupyter_server", "iavicenne_ext.pytest_plugin"]

# Tests talk to loopback only: a peer link whose code names no addresses (join()'s
# default) gathers 127.0.0.1 alone, in this process and in every process it starts
# (tests/servers.py's LOOPBACK_ICE says it again for those).
os.environ[ADDRESSES_VARIABLE] = "127.0.0.1"
