"""Open an ``srdeblur eval --report`` page in headless Chromium: does every image load, and what does it look like?

    python benchmarks/check_report_browser.py REPORT_DIR_OR_HTML [--screenshot shot.png] [--chromium PATH]
    python benchmarks/check_report_browser.py --make-set5 /tmp/report_set5     # eval set5 x4 first, then check

The page is copied to a temporary file beside it (so relative links still resolve) with a tiny script added
that writes, once the page has loaded, how many ``<img>`` elements there are and how many decoded (natural
width > 0) into ``document.title``; Chromium's ``--dump-dom`` prints the DOM after load, and the title is read
from it. A second Chromium run takes a screenshot (default: beside the page) to look at. Exit code 0 when every
image loaded and the page has its SVG charts, 1 otherwise, 2 when Chromium is missing
(``apt-get install chromium``).

The check is not part of the pytest suite: CI machines may have no browser.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.from(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; }).length;
  document.title = "images " + loaded + "/" + images.length + " svg " + document.querySelectorAll("svg").length;
});
</script>"""

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-background-networking",
    "--no-first-run", "--disable-sync", "--disable-component-update", "--disable-dev-shm-usage",
    "--virtual-time-budget=10000",  # let the load event and the probe run before the DOM is dumped
]


def find_chromium(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def run_chromium(chromium: str, url: str, extra: list[str], profile: Path, timeout: float = 120) -> str:
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited with {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def check(page: Path, *, chromium: str, screenshot: Path | None, width: int = 1400, height: int = 3000) -> dict:
    """Load ``page`` with the probe; return counts of ``<img>``, loaded images and SVG charts, and the screenshot."""
    html = page.read_text(encoding="utf-8")
    expected_images = len(re.findall(r"<img\b", html))
    probed = html.replace("</body>", PROBE + "</body>", 1)
    with tempfile.TemporaryDirectory() as profile_dir, tempfile.NamedTemporaryFile(
        "w", suffix=".html", prefix=".probe-", dir=page.parent, delete=False, encoding="utf-8"
    ) as probe_file:
        probe_file.write(probed)
        probe_path = Path(probe_file.name)
        try:
            dom = run_chromium(chromium, probe_path.resolve().as_uri(), ["--dump-dom"], Path(profile_dir) / "dom")
            if screenshot is not None:
                run_chromium(chromium, page.resolve().as_uri(),
                             [f"--screenshot={screenshot.resolve()}", f"--window-size={width},{height}"],
                             Path(profile_dir) / "shot")
        finally:
            probe_path.unlink(missing_ok=True)
    title = re.search(r"<title>images (\d+)/(\d+) svg (\d+)</title>", dom)
    if title is None:
        raise RuntimeError("the probe did not run (no title set); the page did not finish loading?")
    loaded, total, svgs = (int(group) for group in title.groups())
    return {"page": str(page), "img_tags": expected_images, "images": total, "loaded": loaded, "svg": svgs,
            "screenshot": str(screenshot) if screenshot else None}


def make_set5_report(folder: Path, methods: str) -> None:
    command = [sys.executable, "-m", "srdeblur", "eval", "--dataset", "set5", "--scale", "4", "--method", methods,
               "--report", str(folder), "--summary-only"]
    subprocess.run(command, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="a report folder (its index.html) or an HTML file")
    parser.add_argument("--make-set5", action="store_true", help="first run srdeblur eval --dataset set5 --scale 4 "
                        "--report REPORT")
    parser.add_argument("--method", default="bicubic,lanczos", help="methods for --make-set5 (add net when the "
                        "weights are shipped)")
    parser.add_argument("--screenshot", type=Path, help="default: REPORT/screenshot.png")
    parser.add_argument("--chromium", help="browser executable (default: chromium on PATH)")
    args = parser.parse_args()

    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("chromium not found (apt-get install chromium)", file=sys.stderr)
        return 2
    if args.make_set5:
        make_set5_report(args.report, args.method)
    page = args.report / "index.html" if args.report.is_dir() else args.report
    screenshot = args.screenshot or page.parent / "screenshot.png"
    result = check(page, chromium=chromium, screenshot=screenshot)
    ok = result["images"] == result["loaded"] == result["img_tags"] > 0 and result["svg"] >= 1
    print(f"{result['page']}: {result['loaded']}/{result['images']} images loaded ({result['img_tags']} <img> in "
          f"the source), {result['svg']} SVG chart(s); screenshot {result['screenshot']}: "
          + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
