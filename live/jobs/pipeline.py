"""The live loop: newest driving frame -> track -> calibrate -> engine -> composite -> sinks.

Two stages run side by side, so a 2-core machine keeps up: a tracking thread (newest
captured frame -> face tracker) and the loop (calibration, engine, compositing, sinks) on
the caller's thread; capture, portrait preparation, the HTTP server and the recorder have
threads of their own. Each hand-over keeps only the newest item (stale frames are dropped
and counted), so latency never accumulates, and the tracking thread skips the frames the
loop would not take anyway (:class:`TrackPacer`); a source that must not drop (a driver
video played as fast as possible) is never dropped from. Keys (preview window, global
listener, tests) become :class:`~live.io.hotkeys.Command` values queued by
:meth:`LivePipeline.submit` and applied between frames.

Robustness: no face -> the engine holds, then eases back to the neutral portrait; camera
lost -> the last output is re-sent at the output rate with a "camera lost" badge while the
source retries; an engine or sink error on one frame is logged and that frame skipped.

Backgrounds (``--background``, :mod:`live.background`): the current one's layer is applied
after compositing, with the engine's matte of the animated crop pasted into the portrait's
(the matte follows the head); the B key switches to the next one once its layer is built on
the portrait library's thread, so the loop never waits for it. Every sink gets the same frame.

Calibration: the neutral driving pose is the first moment the face holds still
(:class:`calibrate.neutral.NeutralPoseDetector`), again after the recalibrate key; with
``auto_match`` the frame that best matches the portrait's pose within ``match_window``
seconds is taken instead. Calibrations are remembered per portrait for the session.
"""

from __future__ import annotations

import logging
import math
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from calibrate.errors import MimicamError
from calibrate.neutral import NeutralPoseDetector, pose_distance
from live.background import Background, BackgroundLayer, background_cycle
from live.config import LiveConfig
from live.engines.base import Engine, crop_matte
from live.face.portraits import PortraitLibrary, PreparedPortrait
from live.geometry import letterbox, transform_points
from live.io.capture import FrameSlot, FrameSource
from live.io.hotkeys import Action, Command, GlobalHotkeys, KeyHandler
from live.io.overlay import (
    OverlayInfo,
    draw_badge,
    draw_overlay,
    draw_pose_guide,
    face_outline,
    picture_in_picture,
)
from live.io.sinks import PreviewSink, Sink
from live.packets import FaceCrop, Frame, Tracked
from live.stats import LiveStats

log = logging.getLogger(__name__)

__all__ = ["CAMERA_LOST_BADGE", "LivePipeline", "TrackPacer", "Tracker"]

CAMERA_LOST_BADGE = "CAMERA LOST - retrying"
_SINK_FAILURE_LIMIT = 30  # consecutive failures after which a sink is dropped


class Tracker(Protocol):
    def process(self, frame: Frame) -> Tracked: ...

    def close(self) -> None: ...


def _frame_landmarks(face: FaceCrop | None) -> np.ndarray | None:
    """The face's landmarks in frame pixels, or None."""
    if face is None or face.landmarks is None:
        return None
    return transform_points(face.landmarks, face.crop_to_frame)


PACE_WINDOW = 15
"""How many recent loop and tracking times :class:`TrackPacer`'s estimates are medians of."""
PACE_SLACK = 0.003
"""Seconds :class:`TrackPacer` adds to a tracking time it expects (its spread from frame to
frame), so that it errs towards tracking a frame the loop might not take."""


class TrackPacer:
    """Which newly captured frames the tracking thread tracks while the loop is busy.

    The loop takes one tracked frame at a time. When its frames take longer than the camera's
    (the mesh engine on 2 cores: ~55 ms against 33), a frame tracked early in one of them is
    replaced in the hand-over by the next one tracked before the loop is free: its tracking
    was wasted, on CPU the loop's own threads need. The pacer skips a frame when the next one
    would be tracked by the time the loop is free to take this one: it expects the loop free
    at the start of its current frame plus the median of its recent frame times (and so on,
    frame after frame), the next frame one frame interval after this one, and tracking to
    take the median of recent tracking times (plus :data:`PACE_SLACK`). So about one frame
    is tracked for each the loop takes, the newest that is ready in time. While the loop
    waits for a frame, and until the pacer has a few of each time, every frame is tracked.

    Thread-safe: the loop calls :meth:`loop_started` / :meth:`loop_finished`, the tracking
    thread :meth:`should_track` and :meth:`tracked`; times are ``perf_counter()`` seconds.
    """

    def __init__(self, *, window: int = PACE_WINDOW, slack: float = PACE_SLACK) -> None:
        self.slack = float(slack)
        self._lock = threading.Lock()
        self._loop: deque[float] = deque(maxlen=window)
        self._track: deque[float] = deque(maxlen=window)
        self._interval: deque[float] = deque(maxlen=window)
        self._busy_since: float | None = None
        self._last: tuple[int, float] | None = None

    def loop_started(self, t: float) -> None:
        """The loop took a tracked frame at ``t`` and is busy with it."""
        with self._lock:
            self._busy_since = t

    def loop_finished(self, t: float) -> None:
        """The loop is done with its frame at ``t`` (it waits for the next)."""
        with self._lock:
            if self._busy_since is not None:
                self._loop.append(t - self._busy_since)
            self._busy_since = None

    def tracked(self, seconds: float) -> None:
        """Tracking a frame took ``seconds``."""
        with self._lock:
            self._track.append(seconds)

    def should_track(self, frame: Frame) -> bool:
        """Track ``frame`` (just read from the source)? False when the next frame will do."""
        with self._lock:
            last, self._last = self._last, (frame.index, frame.t_capture)
            if last is not None and frame.index > last[0] and frame.t_capture > last[1]:
                self._interval.append((frame.t_capture - last[1]) / (frame.index - last[0]))
            busy = self._busy_since
            if busy is None or len(self._loop) < 3 or len(self._track) < 3 \
                    or not self._interval:
                return True
            loop = statistics.median(self._loop)
            track = statistics.median(self._track) + self.slack
            # the first time the loop is free after this frame would be tracked (a loop
            # frame after another, from the current one on)
            free = busy + loop
            done = frame.t_capture + track
            if done > free and loop > 0.0:
                free += math.ceil((done - free) / loop) * loop
            # ... and whether the next frame would be tracked by then too
            return frame.t_capture + statistics.median(self._interval) + track > free


class _TrackingStage:
    """The tracker on its own thread: source -> tracker -> latest-wins slot of ``Tracked``.

    Counts frames without a face and tracking losses (every tracked frame, also those the
    loop never takes). A tracker error on one frame is logged and that frame skipped. From a
    real-time source, :attr:`pacer` skips the frames the loop would not take (counted in
    :attr:`dropped`).
    """

    def __init__(self, source: FrameSource, tracker: Tracker, stats: LiveStats) -> None:
        self.source = source
        self.tracker = tracker
        self.stats = stats
        self.pacer = TrackPacer()
        self.skipped = 0
        self._slot: FrameSlot[Tracked] = FrameSlot()
        self._stop = threading.Event()
        self._done = False
        self._had_face = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tracking", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        realtime = getattr(self.source, "realtime", True)
        try:
            while not self._stop.is_set():
                frame = self.source.read(timeout=0.1)
                if frame is None:
                    if self.source.ended:
                        break
                    continue
                if realtime and not self.pacer.should_track(frame):
                    self.skipped += 1
                    continue
                tracked = self._track(frame)
                if tracked is None:
                    continue
                if not realtime and not self._slot.wait_empty(self._stop):
                    break
                self._slot.put(tracked)
        finally:
            self._done = True

    def _track(self, frame: Frame) -> Tracked | None:
        stats = self.stats
        t0 = time.perf_counter()
        try:
            tracked = self.tracker.process(frame)
        except Exception as exc:
            stats.add_stage("track", (time.perf_counter() - t0) * 1000.0)
            stats.count("tracker_errors")
            log.error("tracker failed on frame %d (skipped): %s", frame.index, exc,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            return None
        took = time.perf_counter() - t0  # one reading for the stats and the pacer
        stats.add_stage("track", took * 1000.0)
        self.pacer.tracked(took)
        if tracked.face is None:
            stats.count("frames_without_face")
            if self._had_face:
                stats.count("tracking_losses")
        self._had_face = tracked.face is not None
        return tracked

    def read(self, timeout: float) -> Tracked | None:
        return self._slot.take(timeout)

    @property
    def ended(self) -> bool:
        """The source ended and its last tracked frame was taken."""
        return self._done and self._slot.empty

    @property
    def dropped(self) -> int:
        """Frames tracked and replaced before the loop took them, and frames not tracked
        (:attr:`pacer`)."""
        return self._slot.dropped + self.skipped

    def stop(self) -> None:
        self._stop.set()
        self._slot.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10.0)
            if self._thread.is_alive():  # pragma: no cover - a tracker stuck in a call
                log.warning("the tracking thread did not stop within 10 s")


@dataclass
class _Calibration:
    """Where the neutral-pose search stands for the current portrait."""

    done: bool = False
    match_until: float | None = None  # auto_match: collecting candidates until this time
    best: FaceCrop | None = None
    best_distance: float = float("inf")


class LivePipeline:
    """The live loop over prepared parts; owns them and closes them in :meth:`close`.

    ``source`` gives driving frames, ``tracker`` finds the face, ``engine`` animates the
    portraits of ``library``, ``sinks`` receive every output frame, ``preview`` (optional)
    shows it with the overlay and reports keys. Use as a context manager; :meth:`run` loops
    until :meth:`stop`, the quit key, ``duration`` seconds, or the end of a non-looping
    driver video, and returns the :class:`~live.stats.LiveStats`; a source that ended with an
    ``error`` (a driver video without a single decodable frame) raises it.
    """

    def __init__(self, config: LiveConfig, *, source: FrameSource, tracker: Tracker,
                 engine: Engine, library: PortraitLibrary, sinks: Sequence[Sink] = (),
                 preview: PreviewSink | None = None, start_index: int = 0) -> None:
        self.config = config
        self.source = source
        self.tracker = tracker
        self.engine = engine
        self.library = library
        self.sinks: list[Sink] = list(sinks)
        self.preview = preview
        self.stats = LiveStats()
        self.keys = KeyHandler(self.submit)
        self.output_size = config.output_size
        self._tracking = _TrackingStage(source, tracker, self.stats)
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._closed = False
        self._global_keys: GlobalHotkeys | None = None
        if config.global_hotkeys:
            self._global_keys = GlobalHotkeys(self.keys)
        # state, touched only by the loop thread
        self.passthrough = False
        self.frozen = False
        self.overlay = config.overlay
        self._frozen_frame: np.ndarray | None = None
        self._last_output: np.ndarray | None = None
        self._last_send = 0.0
        self._sink_failures: dict[int, int] = {}
        self._pending: tuple[int, Future[PreparedPortrait]] | None = None
        self._neutral_by_portrait: dict[int, FaceCrop] = {}
        self._neutral: FaceCrop | None = None
        self._detector = NeutralPoseDetector()
        self._calib = _Calibration()
        self._backgrounds = background_cycle(library.backgrounds)  # build_pipeline: config's
        self._background_index = 0
        self._background_pending: tuple[int, PreparedPortrait,
                                        Future[BackgroundLayer | None]] | None = None
        library.background = self.background
        self.current: PreparedPortrait = library.prepare(start_index)
        self._layer: BackgroundLayer | None = self.current.backgrounds.get(self.background)
        engine.set_portrait(self.current.handle)

    # -- control (any thread) --------------------------------------------------------------------
    def submit(self, command: Command) -> None:
        """Queue a command; it is applied before the next frame."""
        self._commands.put(command)

    def stop(self) -> None:
        """Ask the loop to finish (safe from signal handlers and other threads)."""
        self._stop.set()

    @property
    def calibrated(self) -> bool:
        return self._calib.done

    @property
    def portrait_index(self) -> int:
        return self.current.index

    @property
    def background(self) -> Background:
        """The background shown now."""
        return self._backgrounds[self._background_index]

    @property
    def backgrounds(self) -> tuple[Background, ...]:
        """What the B key cycles through: the configured backgrounds, then ``keep``."""
        return self._backgrounds

    @property
    def dropped_input(self) -> int:
        """Frames dropped at the input so far (capture and tracking hand-overs)."""
        return int(self.source.dropped) + self._tracking.dropped

    # -- commands ----------------------------------------------------------------------------------
    def _apply_commands(self) -> None:
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            self._apply(cmd)

    def _apply(self, cmd: Command) -> None:
        a = cmd.action
        n = len(self.library)
        if a is Action.QUIT:
            log.info("quit requested")
            self._stop.set()
        elif a is Action.PASSTHROUGH:
            self.passthrough = not self.passthrough
            log.info("passthrough %s", "on" if self.passthrough else "off")
        elif a is Action.OVERLAY:
            self.overlay = not self.overlay
        elif a is Action.FREEZE:
            self.frozen = not self.frozen
            self._frozen_frame = None
            log.info("freeze %s", "on" if self.frozen else "off")
        elif a is Action.RECALIBRATE:
            self.recalibrate()
        elif a is Action.BACKGROUND:
            self.next_background()
        elif a is Action.PORTRAIT and cmd.index is not None:
            if cmd.index < n:
                self.request_portrait(cmd.index)
            else:
                log.info("no portrait %d (the library has %d)", cmd.index + 1, n)
        elif a in (Action.NEXT, Action.PREVIOUS):
            base = self._pending[0] if self._pending is not None else self.current.index
            step = 1 if a is Action.NEXT else -1
            self.request_portrait((base + step) % n)

    def recalibrate(self) -> None:
        """Forget the neutral pose of the current portrait; wait for a still face again."""
        self._neutral_by_portrait.pop(self.current.index, None)
        self._neutral = None
        self._detector.reset()
        self._calib = _Calibration()
        self.engine.recalibrate()
        self.stats.count("recalibrations")
        log.info("recalibrating: hold still with a neutral face")

    def request_portrait(self, index: int) -> None:
        """Prepare portrait ``index`` off the hot path; the loop switches when it is ready."""
        if self._pending is not None and self._pending[0] == index:
            return
        if index == self.current.index:
            self._pending = None
            return
        self._pending = (index, self.library.prepare_async(index))

    def _maybe_switch(self) -> None:
        if self._pending is None or not self._pending[1].done():
            return
        index, fut = self._pending
        self._pending = None
        try:
            prepared = fut.result()
        except Exception as exc:
            log.warning("cannot switch to portrait %d (%s): %s", index + 1,
                        self.library.paths[index].name, exc)
            return
        self._switch_to(prepared)

    # -- backgrounds --------------------------------------------------------------------------
    def next_background(self) -> None:
        """Switch to the next background of :attr:`backgrounds` as soon as its layer is built
        (off the loop thread; the current one stays until then)."""
        n = len(self._backgrounds)
        if n < 2:
            log.info("no background to switch to (give one with --background)")
            return
        pending = self._background_pending
        base = pending[0] if pending is not None else self._background_index
        self._request_background((base + 1) % n)

    def _request_background(self, index: int) -> None:
        background = self._backgrounds[index]
        self.library.background = background  # portraits prepared from now on build it
        prepared = self.current
        if background in prepared.backgrounds:
            self._background_pending = None
            self._set_background(index, prepared.backgrounds[background])
            return
        self._background_pending = (index, prepared,
                                    self.library.layer_async(prepared, background))

    def _maybe_switch_background(self) -> None:
        pending = self._background_pending
        if pending is None or not pending[2].done():
            return
        index, prepared, fut = pending
        self._background_pending = None
        try:
            layer = fut.result()
        except Exception as exc:
            log.warning("cannot switch to background %s: %s", self._backgrounds[index], exc)
            return
        if prepared is not self.current:  # the portrait changed meanwhile
            self._request_background(index)
            return
        self._set_background(index, layer)

    def _set_background(self, index: int, layer: BackgroundLayer | None) -> None:
        changed = index != self._background_index
        self._background_index = index
        self._layer = layer
        if changed:
            self.stats.count("background_switches")
            log.info("background: %s", self.background)

    def _switch_to(self, prepared: PreparedPortrait) -> None:
        old = self.current.index
        self.engine.set_portrait(prepared.handle)
        self.current = prepared
        self._frozen_frame = None
        pending = self._background_pending
        target = pending[0] if pending is not None else self._background_index
        self._background_pending = None
        self._layer = prepared.backgrounds.get(self.background)  # None: plain until built
        self._request_background(target)
        remembered = self._neutral_by_portrait.get(prepared.index)
        if remembered is not None:
            self.engine.calibrate(remembered)
            self._neutral = remembered
            self._calib = _Calibration(done=True)
        elif self._neutral is not None and self._calib.done:
            # keep the current neutral pose; remember it for this portrait too
            self._neutral_by_portrait[prepared.index] = self._neutral
        self.stats.count("portrait_switches")
        log.info("portrait %d -> %d (%s)", old + 1, prepared.index + 1, prepared.portrait.name)

    # -- calibration -------------------------------------------------------------------------------
    def _calibrate_step(self, face: FaceCrop | None, t: float) -> None:
        calib = self._calib
        if calib.done:
            return
        lm = _frame_landmarks(face)
        if calib.match_until is None:
            neutral = self._detector.process(lm, t, item=face)
            if neutral is None:
                return
            chosen: FaceCrop = neutral.item
            if not self.config.auto_match:
                self._set_neutral(chosen, "the face held still"
                                  + (" (timed out)" if neutral.timed_out else ""))
                return
            calib.match_until = t + self.config.match_window
            calib.best = chosen
            calib.best_distance = self._pose_distance(_frame_landmarks(chosen))
        elif face is not None and lm is not None:
            d = self._pose_distance(lm)
            if d < calib.best_distance:
                calib.best, calib.best_distance = face, d
        if t >= calib.match_until and calib.best is not None:
            self._set_neutral(calib.best, f"best pose match {calib.best_distance:.3f} IOD")

    def _pose_distance(self, lm: np.ndarray | None) -> float:
        if lm is None:
            return float("inf")
        try:
            return pose_distance(self.current.portrait.landmarks, lm)
        except ValueError:
            return float("inf")

    def _set_neutral(self, face: FaceCrop, why: str) -> None:
        self.engine.calibrate(face)
        self._neutral = face
        self._neutral_by_portrait[self.current.index] = face
        self._calib = _Calibration(done=True)
        self.stats.count("calibrations")
        log.info("calibrated on frame %d: %s", face.frame_index, why)

    # -- one frame ---------------------------------------------------------------------------------
    def _process(self, tracked: Tracked) -> None:
        stats = self.stats
        stats.count("frames_in")
        frame, face = tracked.frame, tracked.face
        t = frame.time()  # video time, else the capture clock
        out: np.ndarray
        if self.frozen and self._frozen_frame is not None:
            out = self._frozen_frame
            stats.count("frozen")
        elif self.passthrough:
            with stats.stage("compose"):
                out = letterbox(frame.image, self.output_size)
        else:
            self._calibrate_step(face, t)
            try:
                with stats.stage("engine"):
                    crop = self.engine.process(face if self._calib.done else None, t)
            except Exception as exc:
                stats.count("engine_errors")
                log.error("engine failed on frame %d (skipped): %s", frame.index, exc,
                          exc_info=log.isEnabledFor(logging.DEBUG))
                return
            compositor = self.current.compositor
            with stats.stage("compose"):
                out = compositor.compose(crop)
            layer = self._layer
            if layer is not None:
                with stats.stage("background"):
                    matte = compositor.compose_matte(crop_matte(self.engine))
                    out = layer.apply(out, matte, (compositor.region,))
        if self.frozen and self._frozen_frame is None:
            self._frozen_frame = out
        self._send(out, frame.t_capture)
        self._show_preview(out, frame, face)

    def _send(self, out: np.ndarray, t_capture: float | None) -> None:
        """``out`` to every sink; ``t_capture`` None for re-sent frames (no latency sample)."""
        with self.stats.stage("send"):
            for sink in list(self.sinks):
                try:
                    sink.send(out, t_capture if t_capture is not None else time.perf_counter())
                    self._sink_failures.pop(id(sink), None)
                except Exception as exc:
                    self.stats.count("sink_errors")
                    fails = self._sink_failures.get(id(sink), 0) + 1
                    self._sink_failures[id(sink)] = fails
                    log.error("sink %s failed: %s", sink.name, exc)
                    if fails >= _SINK_FAILURE_LIMIT:
                        log.error("sink %s failed %d times in a row; dropping it", sink.name,
                                  fails)
                        self.sinks.remove(sink)
                        _close_quietly(sink)
        now = time.perf_counter()
        self._last_output = out
        self._last_send = now
        if t_capture is not None:
            self.stats.frame_sent(t_capture, now)
        else:
            self.stats.count("repeated")

    def _tracking_label(self, face: FaceCrop | None) -> str:
        if self.passthrough:
            return "passthrough"
        if not self._calib.done:
            if self._calib.match_until is not None:
                return "calibrating: line up with the green outline"
            return "calibrating: hold still" if face is not None else "searching for a face"
        return "face" if face is not None else "no face (easing to neutral)"

    def _show_preview(self, out: np.ndarray, frame: Frame | None,
                      face: FaceCrop | None) -> None:
        if self.preview is None:
            return
        with self.stats.stage("preview"):
            shown = out
            if self.overlay:
                lm = _frame_landmarks(face)
                info = OverlayInfo(
                    fps=self.stats.current_fps(), latency_ms=self.stats.current_latency_ms(),
                    engine=self.engine.name, tracking=self._tracking_label(face),
                    portrait=f"{self.current.index + 1}/{len(self.library)} "
                             f"{self.current.portrait.name}",
                    passthrough=self.passthrough, frozen=self.frozen,
                    camera_lost=self.source.lost,
                    background=str(self.background) if len(self._backgrounds) > 1 else "",
                    pose_match=self._pose_distance(lm) if lm is not None else None)
                shown = draw_overlay(out, info)
                if frame is not None and not self.passthrough:
                    portrait = self.current.portrait
                    guide = draw_pose_guide(
                        frame.image, face_outline(portrait.landmarks), portrait.size,
                        user_outline=face_outline(lm) if lm is not None else None,
                        portrait_to_output=self.current.compositor.portrait_to_output,
                        output_size=self.output_size)
                    shown = picture_in_picture(shown, guide)
            try:
                self.preview.send(shown, time.perf_counter())
                key = self.preview.poll_key()
            except Exception as exc:
                log.error("preview window failed (%s); continuing without it", exc)
                _close_quietly(self.preview)
                self.preview = None
                return
        if key >= 0:
            self.keys.press(key)

    def _camera_lost_tick(self) -> None:
        """While the source is lost: re-send the last output (the still portrait if there was
        none yet) with a badge, at the output rate."""
        if time.perf_counter() - self._last_send < 1.0 / self.config.fps:
            return
        last = self._last_output
        if last is None:
            last = self._layer.still if self._layer is not None \
                else self.current.compositor.background
        badged = draw_badge(last, CAMERA_LOST_BADGE)
        self._send(badged, None)
        self._last_output = last  # keep the clean frame for the next badge
        self._show_preview(badged, None, None)

    # -- loop --------------------------------------------------------------------------------------
    def run(self, *, duration: float | None = None) -> LiveStats:
        """Loop until stopped; returns the run's statistics."""
        if self._closed:
            raise RuntimeError("LivePipeline: closed")
        duration = duration if duration is not None else self.config.duration
        self.source.start()
        self._tracking.start()
        t_start = time.perf_counter()
        self.stats.t_start = t_start
        t_end = t_start + duration if duration is not None else None
        period = 1.0 / self.config.fps
        log.info("live: %s engine, %d portrait(s), output %dx%d; sinks: %s", self.engine.name,
                 len(self.library), *self.output_size,
                 ", ".join(s.name for s in self.sinks) or "none")
        while not self._stop.is_set():
            now = time.perf_counter()
            if t_end is not None and now >= t_end:
                break
            self._apply_commands()
            self._maybe_switch()
            self._maybe_switch_background()
            if self._stop.is_set():
                break
            wait = period if t_end is None else max(0.0, min(period, t_end - now))
            tracked = self._tracking.read(timeout=wait)
            if tracked is None:
                if self._tracking.ended:
                    log.info("the driver video ended")
                    break
                if self.source.lost:
                    self._camera_lost_tick()
                elif self.preview is not None:
                    self._show_preview_idle()
                continue
            pacer = self._tracking.pacer
            pacer.loop_started(time.perf_counter())
            try:
                self._process(tracked)
            finally:
                pacer.loop_finished(time.perf_counter())
        self._tracking.stop()
        self.stats.set_counter("dropped_input", self.source.dropped + self._tracking.dropped)
        error = getattr(self.source, "error", None)
        if isinstance(error, MimicamError):  # e.g. a driver video that gave no frame at all
            raise error
        return self.stats

    def _show_preview_idle(self) -> None:
        """Keep the window responsive while no frame arrives."""
        if self.preview is None:
            return
        try:
            key = self.preview.poll_key()
        except Exception:  # pragma: no cover - window trouble is handled on the next frame
            return
        if key >= 0:
            self.keys.press(key)

    def summary(self) -> dict[str, Any]:
        """The final statistics with the run's settings, ready for ``--stats FILE.json``."""
        return self.stats.to_dict(
            engine=self.engine.name,
            output={"width": self.output_size[0], "height": self.output_size[1],
                    "fps": self.config.fps},
            source_fps=round(float(self.source.fps), 3),
            portraits=len(self.library),
            backgrounds=[str(b) for b in self._backgrounds],
            sinks=[s.name for s in self.sinks],
            # the driving crops' size at the end (a FaceTracker's; it follows the camera's
            # resolution of the face: benchmarks/README "Round 49")
            driving_crop=getattr(self.tracker, "current_crop_size", None),
        )

    # -- life cycle --------------------------------------------------------------------------------
    def close(self) -> None:
        """Release everything: source, sinks, preview, tracker, engine, library; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._tracking.stop()
        parts: list[Any] = [self._global_keys, self.source, *self.sinks, self.preview,
                            self.library, self.tracker, self.engine]
        for part in parts:
            if part is not None:
                _close_quietly(part)

    def __enter__(self) -> LivePipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_quietly(part: Any) -> None:
    try:
        part.close()
    except Exception:
        log.warning("closing %s failed", type(part).__name__, exc_info=True)
