"""What a flood costs a JupyterLab window (issue 21, floods): bob sends 1,500 messages in
15 s to the room alice's Lab shows; printed, median of 3 runs: the longest task of her
page's main thread while they come (Chromium's long tasks), how many message elements and
elements in all her page holds at the end.

    python benchmarks/lab_flood.py                 # the committed build
    python benchmarks/lab_flood.py --build PATH    # another build of iavicenne-lab (e.g. an older checkout's)
    python benchmarks/lab_flood.py --count 300 --seconds 3 --runs 1   # quick

The server lets every message through (the test servers' raised rates): the panel's worst
case. With the default options, `chat_messages_per_second` (20, burst 200) refuses ~1,000
of them at the server (tests/server/test_moderation.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from lab_flood_support import Flood, bob, flood, lab_server, longest, open_lab, open_window  # noqa: E402
from notebook_support import CHROMIUM_ARGS, chromium_path  # noqa: E402

BUILD = HERE.parent / "iavicenne_ext" / "labextension"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, default=BUILD, help="the iavicenne-lab build to measure")
    parser.add_argument("--count", type=int, default=1500)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--text", default="@alice flood", help="each message is '<text> <n>' (a mention: a notification each, unless throttled)"
    )
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    results: list[Flood] = []
    with tempfile.TemporaryDirectory() as workdir, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            for run in range(args.runs):
                # a server each: every run starts from an empty room (no history replayed)
                lab = lab_server(Path(workdir) / f"run{run}", args.build.resolve()).wait_serving()
                page = open_window(browser, "alice-token")
                try:
                    open_lab(page, lab, "alice")
                    sender = bob(lab, Path(workdir) / f"bob-{run}.log")
                    try:
                        cost = flood(page, sender, count=args.count, seconds=args.seconds, text=args.text)
                    finally:
                        sender.stop()
                finally:
                    page.context.close()
                    lab.stop()
                print(f"run {run + 1}: {cost.summary()}", flush=True)
                results.append(cost)
        finally:
            browser.close()
    print(
        f"\n{args.count} messages {args.text!r} in {args.seconds:g} s into alice's JupyterLab ({args.build}), median of {len(results)}:"
    )
    print(f"  longest main-thread task  {longest(statistics.median(r.longest_task_ms for r in results)):>11}")
    print(f"  tasks over 50 ms          {statistics.median(r.long_tasks for r in results):8.0f}")
    print(f"  message elements          {statistics.median(r.messages_in_dom for r in results):8.0f}")
    print(f"  elements in the page      {statistics.median(r.dom_nodes for r in results):8.0f}")


if __name__ == "__main__":
    main()
