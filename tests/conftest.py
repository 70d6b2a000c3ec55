pytest_plugins = ["pytest_jupyter.jupyter_server", "iavicenne_ext.pytest_plugin"]
