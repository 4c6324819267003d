"""What the control page of ``mimicam live --http`` drives: :class:`LiveControl`.

The page's buttons become the same :class:`~live.io.hotkeys.Command` values as the keys and
go through :meth:`LivePipeline.submit <live.jobs.pipeline.LivePipeline.submit>` (a queue the
loop empties between frames), so the HTTP threads never touch the loop's state. The state
the page shows is read from the pipeline (plain attributes, replaced atomically) and from
:meth:`LiveStats.live <live.stats.LiveStats.live>` (locked).

Adding a portrait (:meth:`LiveControl.add_portrait`) stores the picture with
:func:`live.face.upload.store_portrait` (type, size, pixels, decoding, a face, free disk: each
refused with a clear message) in the portrait folder, appends it to the library and asks the
loop to switch to it. When ``mimicam live`` was started with one picture instead of a folder
uploads are refused: there is no folder of the user's that they could go in (making one
next to the picture would litter), and the page says to start with ``--portrait FOLDER``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2

from calibrate.errors import MimicamError
from live.face.upload import UploadLimits, UploadRejected, remove_stale_uploads, store_portrait
from live.io.hotkeys import Action, Command, command_for
from live.io.web import ControlError
from live.jobs.pipeline import LivePipeline

log = logging.getLogger(__name__)

__all__ = ["LiveControl"]

THUMB_SIZE = 240
_TOGGLES = {"recalibrate": Action.RECALIBRATE, "passthrough": Action.PASSTHROUGH,
            "freeze": Action.FREEZE, "overlay": Action.OVERLAY, "next": Action.NEXT,
            "previous": Action.PREVIOUS}


class LiveControl:
    """The page's view of a running :class:`~live.jobs.pipeline.LivePipeline`
    (:class:`live.io.web.ControlApi`); thread-safe.

    ``portrait_dir`` is the folder uploads go in (None: uploads refused, ``why_no_upload``
    says why); ``max_uploads`` bounds how many new pictures one run stores.
    """

    def __init__(self, pipeline: LivePipeline, *, portrait_dir: Path | None,
                 why_no_upload: str = "", limits: UploadLimits | None = None,
                 max_uploads: int = 100) -> None:
        self.pipeline = pipeline
        self.portrait_dir = Path(portrait_dir) if portrait_dir is not None else None
        self.why_no_upload = why_no_upload or "adding portraits is off"
        self.limits = limits or UploadLimits()
        self.max_uploads = int(max_uploads)
        self.uploads = 0
        self._lock = threading.Lock()
        self._thumbs: dict[tuple[int, str], bytes] = {}
        if self.portrait_dir is not None:
            removed = remove_stale_uploads(self.portrait_dir)
            if removed:
                log.info("removed %d unfinished upload(s) of an earlier run from %s", removed,
                         self.portrait_dir)

    @classmethod
    def for_portrait(cls, pipeline: LivePipeline, portrait: Path, **kw: Any) -> LiveControl:
        """Uploads go into ``portrait`` when it is a folder; a single picture gets none."""
        if portrait.is_dir():
            return cls(pipeline, portrait_dir=portrait, **kw)
        return cls(pipeline, portrait_dir=None, why_no_upload=(
            f"Adding portraits needs a portrait folder: mimicam live was started with one "
            f"picture ({portrait.name}). Start it with --portrait FOLDER to add pictures "
            f"from this page."), **kw)

    # -- ControlApi --------------------------------------------------------------------------------
    @property
    def upload_max_bytes(self) -> int:
        return self.limits.max_bytes if self.portrait_dir is not None else 0

    def state(self) -> dict[str, Any]:
        p = self.pipeline
        names = list(p.library.names)
        stats = p.stats.live()
        stats["dropped_input"] = p.dropped_input
        upload: dict[str, Any] = {"enabled": self.portrait_dir is not None,
                                  "max_bytes": self.upload_max_bytes,
                                  "why_not": "" if self.portrait_dir is not None
                                  else self.why_no_upload}
        if self.portrait_dir is not None:
            upload["folder"] = self.portrait_dir.name + "/"
        return {
            "engine": p.engine.name,
            "portraits": [{"index": i, "name": n} for i, n in enumerate(names)],
            "current": p.portrait_index,
            "passthrough": bool(p.passthrough),
            "frozen": bool(p.frozen),
            "overlay": bool(p.overlay),
            "calibrated": bool(p.calibrated),
            "camera_lost": bool(getattr(p.source, "lost", False)),
            "background": self._background(),
            "upload": upload,
            "stats": stats,
        }

    def command(self, action: str, args: Mapping[str, Any]) -> dict[str, Any]:
        p = self.pipeline
        if action == "portrait":
            index = args.get("index")
            n = len(p.library)
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n:
                raise ControlError(400, f"no portrait {index!r}; expected an index 0..{n - 1}")
            p.submit(Command(Action.PORTRAIT, index))
            return {"index": index}
        if action == "background":
            cmd = command_for("b")
            if cmd is None:
                raise ControlError(404, "this version has no background choice")
            p.submit(cmd)
            return {}
        known = _TOGGLES.get(action)
        if known is None:
            raise ControlError(400, f"unknown action {action!r}; expected one of "
                               f"{', '.join(['portrait', 'background', *_TOGGLES])}")
        p.submit(Command(known))
        return {}

    def thumbnail(self, index: int) -> bytes | None:
        paths = self.pipeline.library.paths
        if not 0 <= index < len(paths):
            return None
        path = paths[index]
        try:
            key = (index, f"{path}:{path.stat().st_mtime_ns}")
        except OSError:
            return None
        with self._lock:
            cached = self._thumbs.get(key)
        if cached is not None:
            return cached
        from live.face.portraits import load_image

        try:
            image = load_image(path, max_size=THUMB_SIZE)
        except MimicamError as exc:
            log.debug("no thumbnail for %s: %s", path, exc)
            return None
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:  # pragma: no cover - OpenCV cannot fail on a valid image
            return None
        jpeg = buf.tobytes()
        with self._lock:
            self._thumbs[key] = jpeg
        return jpeg

    def add_portrait(self, data: bytes) -> dict[str, Any]:
        folder = self.portrait_dir
        if folder is None:
            raise ControlError(409, self.why_no_upload)
        with self._lock:
            if self.uploads >= self.max_uploads:
                raise ControlError(429, f"this run has added {self.uploads} pictures, the "
                                   "most it takes; restart mimicam live to add more")
        try:
            stored = store_portrait(data, folder, limits=self.limits)
        except UploadRejected as exc:
            log.info("upload refused: %s", exc)
            raise ControlError(exc.status, str(exc)) from None
        if stored.added:
            with self._lock:
                self.uploads += 1
        index = self.pipeline.library.add(stored.path)
        self.pipeline.submit(Command(Action.PORTRAIT, index))
        log.info("portrait %d added from the control page: %s", index + 1, stored.path.name)
        return {"index": index, "name": stored.path.name, "added": stored.added}

    # -- optional parts ----------------------------------------------------------------------------
    def _background(self) -> dict[str, Any] | None:
        """The background choice (``--background``, switched like the B key): the current
        one and what B cycles through, or None (the button hidden) when there is nothing to
        switch to."""
        choices = tuple(getattr(self.pipeline, "backgrounds", ()) or ())
        if command_for("b") is None or len(choices) < 2:
            return None
        current = getattr(self.pipeline, "background", None)
        return {"label": str(current) if current is not None else "",
                "choices": [str(c) for c in choices]}
