"""Screenshots of the committed leaderboard page and attention report at a phone's and a desktop's width.

    python scripts/screenshots.py [--out docs/img]

writes leaderboard-390.png, leaderboard-1400.png, report-390.png and report-1400.png (the top of each
page, as tall as SCREEN_HEIGHTS says) and leaderboard-table-390.png, leaderboard-table-1400.png (the
default track's tables), at 100% zoom (device scale 1), in headless Chromium (cxrbench.browser: Debian's
chromium package, no download).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cxrbench.browser import VIEWPORTS, chromium

ROOT = Path(__file__).resolve().parent.parent
PAGES = {
    "leaderboard": ROOT / "leaderboard" / "index.html",
    "report": ROOT / "docs" / "report-default" / "index.html",
}
#: How much of each page a screenshot shows, in CSS pixels from the top, per viewport name.
SCREEN_HEIGHTS = {
    ("leaderboard", "390"): 2600,
    ("leaderboard", "1400"): 1700,
    ("report", "390"): 2400,
    ("report", "1400"): 1900,
}
#: Extra shots: name -> (page, CSS selector of where it starts, height per viewport name).
SECTION_SHOTS = {"leaderboard-table": ("leaderboard", "#track-default", {"390": 1500, "1400": 1000})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"))
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    for viewport, width, height, mobile in VIEWPORTS:
        with chromium(width, height, mobile) as context:
            page = context.new_page()
            for name, path in PAGES.items():
                page.goto(path.as_uri())
                page.wait_for_load_state("load")
                tall = min(
                    SCREEN_HEIGHTS[(name, viewport)], page.evaluate("document.documentElement.scrollHeight")
                )
                target = out / f"{name}-{viewport}.png"
                _shot(page, target, width, 0, tall)
                for shot, (page_name, selector, heights) in SECTION_SHOTS.items():
                    if page_name == name:
                        top = page.evaluate(
                            f"document.querySelector({selector!r}).getBoundingClientRect().top"
                            " + window.scrollY"
                        )
                        _shot(page, out / f"{shot}-{viewport}.png", width, top, heights[viewport])


def _shot(page, target: Path, width: int, top: float, height: int) -> None:
    page.screenshot(
        path=str(target),
        full_page=True,
        timeout=300_000,
        clip={"x": 0, "y": top, "width": width, "height": height},
    )
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
