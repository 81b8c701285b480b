"""Regenerate Home's preview pictures (dashboard/previews/<demo>.png): a crop of each page's
screenshot in docs/screenshots/, shown on a gallery card until the runs folder holds a result
of that kind. Run after refreshing the screenshots:

    python scripts/make_previews.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# demo -> (screenshot, top of the crop in the 1400-px-wide screenshot)
SOURCES = {
    "train": ("train.png", 330),
    "transfer": ("transfer.png", 560),
    "inside": ("inside_dream.png", 760),
    "dynamic": ("dynamic.png", 620),
    "segmentation": ("segmentation.png", 560),
    "fewshot": ("fewshot.png", 420),
    "ssl": ("ssl.png", 430),
    "architecture": ("embeddings.png", 300),
    "longtail": ("longtail.png", 560),
}
LEFT, WIDTH, HEIGHT = 300, 1060, 600  # the page's main column, past the sidebar
SIZE = (424, 240)


def main() -> int:
    out = ROOT / "dashboard" / "previews"
    out.mkdir(exist_ok=True)
    for key, (name, top) in SOURCES.items():
        with Image.open(ROOT / "docs" / "screenshots" / name) as im:
            crop = im.convert("RGB").crop((LEFT, top, LEFT + WIDTH, top + HEIGHT))
            crop.resize(SIZE, Image.Resampling.LANCZOS).save(out / f"{key}.png", optimize=True)
        print(f"{key}: {name} from y={top}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
