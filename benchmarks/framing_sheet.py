"""Contact sheet of ``mimicam live``'s framings (``--framing shoulders | head | full``) for
fixture portraits: what the virtual camera shows at 1280x720, the mesh engine's crop pasted
back into the framed portrait (the neutral pose), each tile labelled with the framing, the
portrait and its scale (output pixels per portrait pixel).

Portraits come from the shared fixtures (``../shared/fixtures/portraits``)::

    .venv/bin/python benchmarks/framing_sheet.py [--out benchmarks/img/framing.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from live.bench.common import write_png

REPO_ROOT = Path(__file__).resolve().parents[1]
PORTRAITS = REPO_ROOT.parent / "shared" / "fixtures" / "portraits"
DEFAULT_NAMES = ("lp_s9_mona_lisa.jpg", "deepface_img1_smile_teeth.jpg",
                 "multi_pg_fom_multi_person.jpg")
OUTPUT = (1280, 720)


def _label(image: np.ndarray, text: str, origin: tuple[int, int]) -> None:
    for color, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, thickness,
                    cv2.LINE_AA)


def tiles(name: str, tile: tuple[int, int]) -> list[np.ndarray]:
    """The three framings of one portrait, as ``tile``-sized RGB images."""
    from live.compose import Compositor
    from live.engines.base import create_engine
    from live.face.framing import portrait_framing
    from live.face.portraits import find_portrait, load_image
    from live.geometry import FRAMINGS

    engine = create_engine("mesh", size=256)
    try:
        portrait = find_portrait(load_image(PORTRAITS / name), engine.size,
                                 path=PORTRAITS / name)
        engine.set_portrait(engine.prepare(portrait.crop.image))
        crop = engine.process(None, 0.0)
    finally:
        engine.close()
    out = []
    for mode in FRAMINGS:
        framing = portrait_framing(portrait.landmarks, portrait.size, OUTPUT, mode)
        comp = Compositor(portrait.image, portrait.crop.crop_to_frame, 256, OUTPUT,
                          feather=0.03, framing=framing)
        frame = cv2.resize(comp.compose(crop), tile, interpolation=cv2.INTER_AREA)
        _label(frame, f"{mode}  x{framing.scale:.2f}", (6, tile[1] - 8))
        if not out:
            _label(frame, name, (6, 16))
        out.append(frame)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks/img/framing.png")
    parser.add_argument("--names", default=",".join(DEFAULT_NAMES),
                        help="comma-separated fixture portraits (one row each)")
    parser.add_argument("--tile", type=int, default=280, help="tile width in pixels")
    args = parser.parse_args()
    tile = (args.tile, round(args.tile * OUTPUT[1] / OUTPUT[0]))
    gap = 4
    rows = [tiles(n, tile) for n in args.names.split(",")]
    sheet = np.full((len(rows) * (tile[1] + gap) - gap, 3 * (tile[0] + gap) - gap, 3), 255,
                    np.uint8)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            y, x = r * (tile[1] + gap), c * (tile[0] + gap)
            sheet[y:y + tile[1], x:x + tile[0]] = img
    size = write_png(args.out, sheet)  # < 300 kB: drops low bits if needed
    print(f"wrote {args.out} ({size // 1024} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
