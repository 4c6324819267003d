"""Contact sheets of the mesh engine: fixture portraits driven by fixture clips, one frame each.

Renders, with whatever ``live`` package is importable (so an older checkout can be measured
with ``PYTHONPATH=that/checkout``), the frames ``--frames`` of ``mimicam animate`` for every
portrait x clip pair, and writes them as one row per portrait into ``--out`` (an ``.npz`` of
the cells). ``--compose BEFORE.npz AFTER.npz --png OUT.png`` lays two such runs side by side:
per pair the driving frame, before, after.

    .venv/bin/python benchmarks/mesh_sheet.py --out /tmp/after.npz
    PYTHONPATH=/tmp/old .venv/bin/python benchmarks/mesh_sheet.py --out /tmp/before.npz
    .venv/bin/python benchmarks/mesh_sheet.py --compose /tmp/before.npz /tmp/after.npz \\
        --png benchmarks/img/mesh_before_after.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
PORTRAITS = ("astronaut", "deepface_img1_smile_teeth.jpg", "sadtalker_art_14.png",
             "lp_s2_bw_photo.jpg")
PAIRS = (("lp_d18.mp4", 126), ("lp_d3.mp4", 282))
CELL = 120


def _portrait_file(name: str, folder: Path) -> Path:
    if name != "astronaut":
        return SHARED / "portraits" / name
    from skimage import data

    path = folder / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def _frame(path: Path, index: int) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return np.asarray(frame.to_ndarray(format="rgb24"))
    raise SystemExit(f"{path}: no frame {index}")


def _cell(image: np.ndarray, box: tuple[int, int, int] | None = None) -> np.ndarray:
    """A CELL x CELL view: the square ``box`` (x0, y0, side) of ``image``, else its centre."""
    h, w = image.shape[:2]
    if box is None:
        side = min(h, w)
        box = ((w - side) // 2, (h - side) // 2, side)
    x0, y0, side = box
    x0, y0 = max(0, min(x0, w - side)), max(0, min(y0, h - side))
    return cv2.resize(image[y0:y0 + side, x0:x0 + side], (CELL, CELL),
                      interpolation=cv2.INTER_AREA)


def _face_box(path: Path) -> tuple[int, int, int]:
    """A square around the largest face of a picture (1.8 face sizes), inside the picture."""
    from live.face.portraits import find_faces, load_image

    image = load_image(path)
    pts = max(find_faces(image), key=lambda f: float(np.ptp(f[:, 0])))[:, :2]
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    side = int(min(1.8 * max(x1 - x0, y1 - y0), *image.shape[:2]))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return int(cx - side / 2), int(cy - side / 2), side


def render(out: Path) -> None:
    from live.jobs.animate import AnimateConfig, run_animate

    cells: dict[str, np.ndarray] = {}
    small = 512  # frames are kept with this long side
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in PORTRAITS:
            portrait = _portrait_file(name, folder)
            x, y, side = _face_box(portrait)
            h, w = cv2.imread(str(portrait)).shape[:2]
            k = small / max(h, w)
            cells[f"box|{name}"] = np.array([x * k, y * k, side * k]).round().astype(int)
            for clip, index in PAIRS:
                video = SHARED / "driving" / clip
                target = folder / f"{Path(name).stem}_{Path(clip).stem}.mp4"
                run_animate(AnimateConfig(source_image=portrait, driving_video=video,
                                          output=target, keep_audio=False,
                                          max_frames=index + 1), progress=False)
                frame = _frame(target, index)
                k = small / max(frame.shape[:2])
                cells[f"{name}|{clip}"] = cv2.resize(frame, None, fx=k, fy=k,
                                                     interpolation=cv2.INTER_AREA)
                cells[f"driver|{clip}"] = _cell(_frame(video, index))
                print(f"{name} x {clip}: frame {index}", file=sys.stderr)
    np.savez_compressed(out, **cells)


def compose(before: Path, after: Path, png: Path) -> None:
    from live.bench.common import write_png

    b, a = np.load(before), np.load(after)
    rows = []
    for name in PORTRAITS:
        row = []
        for clip, _ in PAIRS:
            box = tuple(int(v) for v in a[f"box|{name}"])
            row += [b[f"driver|{clip}"], _cell(b[f"{name}|{clip}"], box),
                    _cell(a[f"{name}|{clip}"], box)]
        rows.append(np.hstack(row))
    sheet = np.vstack(rows)
    for j, label in enumerate(["driver", "before", "after"] * len(PAIRS)):
        cv2.putText(sheet, label, (j * CELL + 4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (255, 255, 0), 1, cv2.LINE_AA)
    size = write_png(png, sheet)  # < 300 kB: drops low bits if needed
    print(f"{png}: {size // 1024} kB", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="render the cells into this .npz")
    parser.add_argument("--compose", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--png", type=Path, help="with --compose: the sheet to write")
    args = parser.parse_args(argv)
    if args.compose:
        if args.png is None:
            parser.error("--compose needs --png")
        compose(*args.compose, args.png)
    elif args.out:
        if not SHARED.is_dir():
            print(f"needs {SHARED} (the team's shared fixtures)", file=sys.stderr)
            return 1
        render(args.out)
    else:
        parser.error("give --out or --compose")
    return 0


if __name__ == "__main__":
    sys.exit(main())
