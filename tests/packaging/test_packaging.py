"""The package as a user installs it: the extension is enabled by `pip install` alone."""

from __future__ import annotations

import subprocess
import sys


def test_extension_is_enabled_and_valid_after_install() -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "jupyter", "server", "extension", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = listing.stdout + listing.stderr
    lines = [line for line in out.splitlines() if "iavicenne_ext" in line]
    assert any("enabled" in line for line in lines), out
    assert any("OK" in line for line in lines), out


def test_every_option_is_a_documented_traitlet() -> None:
    from iavicenne_ext.app import IAvicenne

    own = {name: trait for name, trait in IAvicenne.class_traits(config=True).items() if trait.this_class is IAvicenne}
    assert {"broker", "redis_url", "history_size", "max_frame_bytes", "messages_per_second", "burst"} <= set(own)
    for name, trait in own.items():
        assert trait.help, f"IAvicenne.{name} has no help text"
