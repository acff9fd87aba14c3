"""Draw the demo feed's images (templates/static/demo/) with Chromium: SVG scenes, saved as JPEG.

The images are ours (simple shapes, no photographs), small (each under 40 kB) and 16:9 at twice
the width a mail shows a lead image, so they stay sharp on high-density screens. Run it again
after changing a scene:

    .venv/bin/python scripts/demo_images.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

OUT = Path(__file__).resolve().parents[1] / "templates" / "static" / "demo"
WIDTH, HEIGHT = 1104, 621
QUALITY = 70
CHROMIUM = "/usr/bin/chromium"

# A border at dusk: ridges, a low sun and a dashed line across the valley.
BORDER = """
<defs><linearGradient id="sky" x1="0" y1="0" x2="0" y2="1">
<stop offset="0" stop-color="#2b3a67"/><stop offset="0.6" stop-color="#e07a5f"/>
<stop offset="1" stop-color="#f2cc8f"/></linearGradient></defs>
<rect width="1104" height="621" fill="url(#sky)"/>
<circle cx="780" cy="330" r="70" fill="#f9e0b0"/>
<path d="M0 380 L160 250 L300 360 L460 210 L620 350 L760 260 L930 370 L1104 240 L1104 621 L0 621Z"
 fill="#5b4a6b"/>
<path d="M0 460 L200 350 L390 450 L560 330 L740 440 L900 360 L1104 430 L1104 621 L0 621Z"
 fill="#3d3152"/>
<path d="M0 540 L260 470 L520 540 L800 480 L1104 540 L1104 621 L0 621Z" fill="#241d33"/>
<path d="M540 621 C560 520 520 440 560 330" stroke="#f2cc8f" stroke-width="6"
 stroke-dasharray="18 14" fill="none"/>
"""

# A globe with its lines of latitude and longitude.
GLOBE = """
<rect width="1104" height="621" fill="#12355b"/>
<g fill="none" stroke="#8fb8de" stroke-width="4" opacity="0.9">
<circle cx="552" cy="310" r="230" fill="#1d4e89"/>
<ellipse cx="552" cy="310" rx="230" ry="80"/><ellipse cx="552" cy="310" rx="230" ry="160"/>
<ellipse cx="552" cy="310" rx="80" ry="230"/><ellipse cx="552" cy="310" rx="160" ry="230"/>
<line x1="322" y1="310" x2="782" y2="310"/><line x1="552" y1="80" x2="552" y2="540"/></g>
<path d="M470 200 C520 170 600 190 620 240 C640 300 560 300 540 350 C520 400 460 380 450 330
 C440 280 420 230 470 200Z" fill="#7fb069"/>
<path d="M640 380 C680 360 720 380 710 420 C700 460 650 450 640 420Z" fill="#7fb069"/>
<g fill="#f4d35e"><circle cx="180" cy="120" r="6"/><circle cx="930" cy="90" r="5"/>
<circle cx="1000" cy="480" r="6"/><circle cx="120" cy="500" r="4"/></g>
"""

# A capitol: steps, columns and a dome against a pale sky.
CAPITOL = """
<rect width="1104" height="621" fill="#dbe4ee"/>
<circle cx="552" cy="210" r="110" fill="#f4f1ea"/>
<rect x="472" y="150" width="160" height="16" fill="#c9c2b4"/>
<rect x="540" y="70" width="24" height="40" fill="#c9c2b4"/>
<path d="M300 300 L552 220 L804 300Z" fill="#e9e4d8"/>
<rect x="300" y="300" width="504" height="24" fill="#c9c2b4"/>
<g fill="#f4f1ea">
<rect x="320" y="324" width="34" height="170"/><rect x="392" y="324" width="34" height="170"/>
<rect x="464" y="324" width="34" height="170"/><rect x="536" y="324" width="34" height="170"/>
<rect x="608" y="324" width="34" height="170"/><rect x="680" y="324" width="34" height="170"/>
<rect x="752" y="324" width="34" height="170"/></g>
<rect x="280" y="494" width="544" height="24" fill="#c9c2b4"/>
<rect x="250" y="518" width="604" height="24" fill="#b3ab9b"/>
<rect x="220" y="542" width="664" height="79" fill="#9d9585"/>
<rect x="0" y="590" width="1104" height="31" fill="#8a8373"/>
"""

# An offer: a price tag saying "½".
OFFER = """
<rect width="1104" height="621" fill="#b3261e"/>
<g transform="rotate(-12 552 310)">
<path d="M330 200 L700 200 L840 310 L700 420 L330 420Z" fill="#fff6e5"/>
<circle cx="720" cy="310" r="22" fill="#b3261e"/>
<text x="500" y="372" font-family="Georgia, serif" font-size="190" font-weight="bold"
 text-anchor="middle" fill="#1c1b19">½</text></g>
<g fill="#ffd6cf" opacity="0.5"><circle cx="140" cy="110" r="40"/><circle cx="960" cy="520" r="60"/>
<circle cx="1000" cy="90" r="24"/><circle cx="110" cy="520" r="28"/></g>
"""

SCENES = {"border.jpg": BORDER, "globe.jpg": GLOBE, "capitol.jpg": CAPITOL, "offer.jpg": OFFER}


def main() -> int:
    """Write every scene as a JPEG and print its size."""
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        for name, scene in SCENES.items():
            svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}">'
            page.set_content(f"<body style='margin:0'>{svg}{scene}</svg></body>")
            target = OUT / name
            page.screenshot(path=str(target), type="jpeg", quality=QUALITY)
            print(f"{target.relative_to(OUT.parents[2])}: {target.stat().st_size // 1024} kB")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
