"""Contact sheet of the backgrounds (``--background keep | blur | COLOUR | IMAGE | transparent``)
for one fixture portrait: what ``mimicam live`` shows at 1280x720 (``shoulders`` framing), the
mesh engine driven by a frame of a fixture driving video where the head has turned, so the
matte is seen following the head. ``transparent`` (``mimicam animate``) is shown over a
checkerboard; the last tile is the frame's person matte.

Portrait and driving video come from the shared fixtures (``../shared/fixtures``); the image
background is scikit-image's ``rocket`` photo (landscape 3:2, so covering 16:9 cuts its top
and bottom)::

    .venv/bin/python benchmarks/background_sheet.py [--out benchmarks/img/backgrounds.png]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import cv2
import numpy as np

from live.bench.common import write_png

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"
OUTPUT = (1280, 720)


def _label(image: np.ndarray, text: str, origin: tuple[int, int]) -> None:
    for color, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, thickness,
                    cv2.LINE_AA)


def checkerboard(size: tuple[int, int], cell: int = 24) -> np.ndarray:
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    light = ((x // cell + y // cell) % 2 == 0)[..., None]
    return np.where(light, np.uint8(205), np.uint8(150)).repeat(3, axis=2).astype(np.uint8)


def frames(portrait: Path, driving: Path, frame: int, specs: list[str]
           ) -> list[tuple[str, np.ndarray]]:
    """(label, 1280x720 RGB) for each background spec, and the frame's matte."""
    from live.background import Background, build_layer
    from live.compose import Compositor
    from live.engines.base import create_engine
    from live.face.framing import portrait_framing
    from live.face.portraits import find_portrait, load_image
    from live.face.segmentation import prepare_layers
    from live.face.tracking import FaceTracker
    from live.io.video import VideoReader

    engine = create_engine("mesh", size=512)
    try:
        found = find_portrait(load_image(portrait), engine.size, path=portrait)
        engine.set_portrait(engine.prepare(found.crop.image))
        with VideoReader(driving) as reader, FaceTracker(crop_size=256) as tracker:
            for f in itertools.islice(reader, frame + 1):
                face = tracker.process(f).face
                crop = engine.process(face, f.time(30.0))
        crop_matte = engine.last_matte
    finally:
        engine.close()
    layers = prepare_layers(found.image)
    assert layers is not None, "the segmentation finds no person in the portrait"
    framing = portrait_framing(found.landmarks, found.size, OUTPUT, "shoulders")
    comp = Compositor(found.image, found.crop.crop_to_frame, engine.size, OUTPUT,
                      feather=0.03, framing=framing, matte=layers.matte)
    picture = comp.compose(crop)
    matte = comp.compose_matte(crop_matte)
    out = []
    for spec in specs:
        background = Background.parse(spec)
        if background.transparent:
            board = checkerboard(OUTPUT)
            a = matte[..., None].astype(np.float32) / 255.0
            shown = np.clip(picture * a + board * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)
        elif background.keep:
            shown = picture
        else:
            image = load_image(background.image) if background.image is not None else None
            layer = build_layer(background, comp, plate=layers.plate, image=image)
            assert layer is not None
            shown = layer.apply(picture, matte, (comp.region,))
        out.append((spec if background.kind != "image" else "image (rocket, cover)", shown))
    out.append(("matte (follows the head)", cv2.cvtColor(matte, cv2.COLOR_GRAY2RGB)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks/img/backgrounds.png")
    parser.add_argument("--portrait", type=Path,
                        default=FIXTURES / "portraits" / "deepface_img1_smile_teeth.jpg")
    parser.add_argument("--driving", type=Path, default=FIXTURES / "driving" / "lp_d3.mp4")
    parser.add_argument("--frame", type=int, default=90,
                        help="driving frame shown (the first is the neutral pose)")
    parser.add_argument("--tile", type=int, default=400, help="tile width in pixels")
    args = parser.parse_args()
    from skimage import data

    tile = (args.tile, round(args.tile * OUTPUT[1] / OUTPUT[0]))
    with tempfile.TemporaryDirectory() as tmp:
        rocket = Path(tmp) / "rocket.png"
        cv2.imwrite(str(rocket), cv2.cvtColor(data.rocket(), cv2.COLOR_RGB2BGR))
        shots = frames(args.portrait, args.driving, args.frame,
                       ["keep", "blur", "green", str(rocket), "transparent"])
    cols, gap = 3, 4
    rows = (len(shots) + cols - 1) // cols
    sheet = np.full((rows * (tile[1] + gap) - gap, cols * (tile[0] + gap) - gap, 3), 255,
                    np.uint8)
    for i, (label, image) in enumerate(shots):
        small = cv2.resize(image, tile, interpolation=cv2.INTER_AREA)
        _label(small, label, (6, tile[1] - 8))
        if i == 0:
            _label(small, f"{args.portrait.name}, {args.driving.name} frame {args.frame}",
                   (6, 16))
        y, x = (i // cols) * (tile[1] + gap), (i % cols) * (tile[0] + gap)
        sheet[y:y + tile[1], x:x + tile[0]] = small
    size = write_png(args.out, sheet)  # < 300 kB: drops low bits if needed
    print(f"wrote {args.out} ({size // 1024} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
