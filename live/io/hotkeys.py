"""Hotkeys of ``mimicam live``: one :class:`KeyHandler` for the preview window and global keys.

The preview window passes ``cv2.waitKeyEx`` codes to :meth:`KeyHandler.press`; the optional
global listener (pynput, imported lazily, never required) passes characters and arrow-key
names. Both produce the same :class:`Command` values, delivered to one callback (the pipeline
queues them and applies them between frames, so callers on any thread are safe).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["HOTKEY_HELP", "Action", "Command", "GlobalHotkeys", "KeyHandler"]


class Action(enum.Enum):
    PORTRAIT = "portrait"  # argument: index 0..8
    NEXT = "next"
    PREVIOUS = "previous"
    RECALIBRATE = "recalibrate"
    PASSTHROUGH = "passthrough"
    OVERLAY = "overlay"
    FREEZE = "freeze"
    BACKGROUND = "background"
    QUIT = "quit"


@dataclass(frozen=True, slots=True)
class Command:
    action: Action
    index: int | None = None  # for Action.PORTRAIT


# (keys, description) in the order shown by --help and the overlay.
HOTKEY_HELP: tuple[tuple[str, str], ...] = (
    ("1-9", "switch to portrait 1-9 of the folder"),
    ("left / right", "previous / next portrait"),
    ("C", "recalibrate (hold still with a neutral face)"),
    ("P", "passthrough: send the real camera image"),
    ("O", "overlay on/off (preview only)"),
    ("F", "freeze the current frame"),
    ("B", "next background (--background ones, then keep)"),
    ("Q / Esc", "quit"),
)

# cv2.waitKeyEx codes of the arrow keys: GTK/Qt on Linux, Windows, macOS.
_LEFT_CODES = frozenset({65361, 2424832, 63234, 0x1000012})
_RIGHT_CODES = frozenset({65363, 2555904, 63235, 0x1000014})

_CHAR_ACTIONS: dict[str, Action] = {
    "c": Action.RECALIBRATE,
    "p": Action.PASSTHROUGH,
    "o": Action.OVERLAY,
    "f": Action.FREEZE,
    "b": Action.BACKGROUND,
    "q": Action.QUIT,
    "\x1b": Action.QUIT,
}
_NAME_ACTIONS: dict[str, Action] = {
    "left": Action.PREVIOUS,
    "right": Action.NEXT,
    "esc": Action.QUIT,
    "escape": Action.QUIT,
}


def command_for(key: int | str) -> Command | None:
    """The command of a key: a ``cv2.waitKeyEx`` code, a character, or a key name
    (``"left"``, ``"right"``, ``"esc"``). None for keys without an action (and for -1)."""
    if isinstance(key, int):
        if key < 0:
            return None
        if key in _LEFT_CODES:
            return Command(Action.PREVIOUS)
        if key in _RIGHT_CODES:
            return Command(Action.NEXT)
        if key > 0xFF:
            return None  # modifier or special keys other than the arrows
        key = chr(key)
    name = key.lower()
    if len(name) == 1:
        if "1" <= name <= "9":
            return Command(Action.PORTRAIT, int(name) - 1)
        action = _CHAR_ACTIONS.get(name)
    else:
        action = _NAME_ACTIONS.get(name)
    return Command(action) if action is not None else None


class KeyHandler:
    """Turns key presses into :class:`Command` values delivered to ``on_command``."""

    def __init__(self, on_command: Callable[[Command], None]) -> None:
        self._on_command = on_command

    def press(self, key: int | str) -> Command | None:
        """Handle one key; returns the command it triggered (None: no action)."""
        cmd = command_for(key)
        if cmd is not None:
            log.debug("key %r -> %s", key, cmd)
            self._on_command(cmd)
        return cmd


class GlobalHotkeys:
    """System-wide hotkeys through pynput, when it is installed and the OS allows it.

    pynput is optional (``pip install "mimicam[hotkeys]"``): when it is missing or cannot start
    (no display, no permission) this logs one warning saying why and does nothing; the preview
    window's keys still work. :meth:`close` is idempotent.
    """

    def __init__(self, handler: KeyHandler) -> None:
        self._handler = handler
        self._listener: Any = None
        try:
            from pynput import keyboard  # type: ignore[import-not-found, unused-ignore]
        except Exception as exc:  # ImportError, or a backend failing at import (no display)
            log.warning("system-wide hotkeys unavailable (pynput: %s; install it with "
                        "pip install \"mimicam[hotkeys]\"); preview-window keys only", exc)
            return

        def on_press(key: Any) -> None:
            char = getattr(key, "char", None)
            if char:
                handler.press(char)
                return
            name = getattr(key, "name", None)
            if name:
                handler.press(name)

        try:
            self._listener = keyboard.Listener(on_press=on_press)
            self._listener.daemon = True
            self._listener.start()
        except Exception as exc:
            log.warning("system-wide hotkeys could not start (pynput: %s); preview-window "
                        "keys only", exc)
            self._listener = None

    @property
    def active(self) -> bool:
        return self._listener is not None

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.stop()
                listener.join(timeout=1.0)
            except Exception:  # pragma: no cover - backend specific
                log.debug("stopping the global hotkey listener failed", exc_info=True)

    def __enter__(self) -> GlobalHotkeys:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
