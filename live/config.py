"""Configuration: strict TOML for frozen dataclasses, and the settings of ``mimicam live``.

One set of defaults lives in each dataclass. :func:`from_mapping` builds a dataclass from a
(nested) mapping and rejects unknown keys and wrong types with a message naming the key;
:func:`load_toml` reads a file; :func:`override` applies CLI flags that were given.

``mimicam live --config FILE.toml`` loads :class:`LiveConfig` strictly and command-line flags
override it (``mimicam animate`` and ``mimicam demo`` read the same ``[engine]`` table).

The ``engine`` key is the engine's name (``engine = "mesh"``), or a table: ``name`` and the
options of each engine, ``[engine.mesh]`` (:class:`~live.engines.options.MeshOptions`) and
``[engine.fomm]`` (:class:`~live.engines.options.FommOptions`); the running engine's table is
used. (TOML cannot have ``engine = "mesh"`` and ``[engine.mesh]`` in one file: with tables
the name is ``name`` in ``[engine]``.) Unknown keys anywhere are errors naming the key.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from calibrate.errors import InputError
from live.background import Background, require_opaque
from live.engines.base import EngineOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")

FramingMode = Literal["shoulders", "head", "full"]
"""How a portrait fills the output (:func:`live.geometry.framing_transform`): ``shoulders``
(head and shoulders, like a webcam), ``head`` (tighter) or ``full`` (letterboxed)."""
FRAMINGS: tuple[FramingMode, ...] = ("shoulders", "head", "full")


_TYPE_NAMES: dict[Any, str] = {float: "a number", int: "a whole number", bool: "true or false",
                               str: "a string", Path: "a path (a string)"}


def _type_name(tp: Any) -> str:
    """What a settings value of type ``tp`` is, in the words of a TOML file."""
    if typing.get_origin(tp) is typing.Literal:
        return " | ".join(map(repr, typing.get_args(tp)))
    name = _TYPE_NAMES.get(tp)
    return name if name is not None else str(getattr(tp, "__name__", tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:  # text goes to the type that reads text, an array to the tuple
            if (isinstance(value, str) and getattr(arg, "parse", None) is not None) \
                    or (isinstance(value, list | tuple) and typing.get_origin(arg) is tuple):
                return _coerce(value, arg, key)
        errors: list[InputError] = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except InputError as exc:
                errors.append(exc)
        if len(errors) == 1:  # X or None: what X expects (a framing: its three names)
            raise errors[0]
        raise InputError(f"config key {key!r} has the wrong type",
                         expected=" or ".join(_type_name(a) for a in args
                                              if a is not type(None)),
                         got=f"{value!r}")
    parse = getattr(tp, "parse", None) if isinstance(tp, type) else None
    if parse is not None and isinstance(value, str):  # a value written as text (Background)
        try:
            return parse(value)
        except InputError as exc:
            raise InputError(f"config key {key!r}: {exc}") from None
    if parse is not None and not isinstance(value, Mapping):
        raise InputError(f"config key {key!r} has the wrong type", expected="a string",
                         got=f"{type(value).__name__} {value!r}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise InputError(f"config key {key!r} must be a table", got=repr(value))
        return from_mapping(tp, value, prefix=f"{key}.")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise InputError(f"config key {key!r} must be an array", got=repr(value))
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(args) != len(value):
            raise InputError(f"config key {key!r} has the wrong length",
                             expected=str(len(args)), got=str(len(value)))
        return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if typing.get_origin(tp) is typing.Literal:
        if value not in typing.get_args(tp):
            raise InputError(f"config key {key!r} has an unknown value",
                             expected=" | ".join(map(repr, typing.get_args(tp))),
                             got=repr(value))
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is Path and isinstance(value, str):
        return Path(value)
    wrong = isinstance(tp, type) and not isinstance(value, tp)
    if wrong or (tp is int and isinstance(value, bool)):
        raise InputError(f"config key {key!r} has the wrong type",
                         expected=_type_name(tp), got=f"{type(value).__name__} {value!r}")
    return value


ENGINE_OPTIONS = "engine_options"
"""A dataclass with an ``engine`` field and this one (an :class:`EngineOptions`) reads the
``engine`` key as a name or as an ``[engine]`` table (see the module docstring)."""


def _engine_table(data: dict[str, Any], hints: Mapping[str, Any],
                  prefix: str) -> dict[str, Any]:
    """Take the ``engine`` key out of ``data``: ``{"engine": name?, "engine_options": ...}``."""
    if ENGINE_OPTIONS in data:
        raise InputError(f"unknown config key {prefix}{ENGINE_OPTIONS}",
                         expected=f"the engines' options in [{prefix}engine.mesh] and "
                         f"[{prefix}engine.fomm] tables")
    table = data.get("engine")
    if not isinstance(table, Mapping):
        return {}  # a name (checked like any key), or no engine key
    del data["engine"]
    key = f"{prefix}engine"
    allowed = ["name", *(f.name for f in dataclasses.fields(EngineOptions))]
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise InputError(f"unknown config key(s) {', '.join(f'{key}.{k}' for k in unknown)}",
                         expected=f"keys of [{key}]: " + ", ".join(allowed))
    out: dict[str, Any] = {}
    if "name" in table:
        out["engine"] = _coerce(table["name"], hints["engine"], f"{key}.name")
    tables = {k: v for k, v in table.items() if k != "name"}
    out[ENGINE_OPTIONS] = from_mapping(EngineOptions, tables, prefix=f"{key}.")
    return out


def from_mapping(cls: type[T], data: Mapping[str, Any], *, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise InputError.

    A dataclass with ``engine`` and ``engine_options`` fields takes ``engine`` as a name or
    as an ``[engine]`` table (``name``, ``[engine.mesh]``, ``[engine.fomm]``); the
    ``engine_options`` field is not a key of its own.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    data = dict(data)
    engine: dict[str, Any] = {}
    keys = sorted(fields)
    if "engine" in fields and ENGINE_OPTIONS in fields:
        engine = _engine_table(data, hints, prefix)
        keys.remove(ENGINE_OPTIONS)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}",
            expected=f"keys of [{prefix.rstrip('.') or 'top level'}]: " + ", ".join(keys),
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs, **engine)


def read_toml(path: str | Path) -> dict[str, Any]:
    """The tables of TOML file ``path`` (InputError when missing or not TOML)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise InputError("config file not found", path=p) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc})", path=p) from None


def load_toml(path: str | Path, cls: type[T]) -> T:
    """Read ``path`` (TOML) into dataclass ``cls``, strictly."""
    data = read_toml(path)
    try:
        return from_mapping(cls, data)
    except InputError as exc:
        if exc.path is not None:
            raise
        raise InputError(str(exc), path=path) from None


def override(obj: T, **changes: Any) -> T:
    """Return ``obj`` with the given fields replaced; ``None`` (a flag not given) is skipped."""
    given = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(obj, **given)  # type: ignore[type-var]



@dataclass(frozen=True)
class LiveConfig:
    """Everything ``mimicam live`` can be told (see ``mimicam live --help``).

    A settings file (``mimicam live --config live.toml``; flags override it)::

        portrait = "portraits/"
        width = 1920
        height = 1080
        framing = "head"         # shoulders (default) | head | full
        background = ["blur", "green", "office.jpg"]   # B cycles (and keep); or one string
        http = "127.0.0.1:8090"
        preview = false

        [engine]
        name = "mesh"            # (without engine tables, also engine = "mesh" at the top)

        [engine.mesh]            # MeshOptions
        adapt_scale = false
        smoothing = true
        min_cutoff = 2.0
        lip_gain = 1.2

        [engine.fomm]            # FommOptions, used with name = "fomm" (and weights = ...)
        backend = "onnxruntime"
        relative = true
    """

    portrait: Path | None = None
    """A portrait image, or a folder of them (hotkeys 1-9 and left/right switch)."""
    engine: str = "mesh"
    """Animation engine: ``mesh`` (weight-free) or ``fomm`` (needs weights). In a settings
    file ``engine = "mesh"``, or ``name`` in the ``[engine]`` table."""
    engine_options: EngineOptions = field(default_factory=EngineOptions)
    """The engines' options: the settings file's ``[engine.mesh]`` and ``[engine.fomm]``
    tables (the engine flags, e.g. ``--adapt-scale``, override them)."""
    weights: Path | None = None
    """FOMM checkpoint (``vox-cpk.pdparams`` or ``.pth.tar``), or a model directory written
    by ``mimicam export``, for ``engine = "fomm"``."""
    crop_size: int | None = None
    """Side of the face crops the engine animates (None: the engine's own: ``[engine.mesh]``
    / ``[engine.fomm]`` ``size``, else 512 for mesh and the model's size for fomm). When set
    it is those ``size`` options (``--crop-size``)."""
    crop_scale: float = 1.8
    """Face crop side in face sizes, for the portrait and the driving face alike."""

    camera: int = 0
    """Webcam index (when no driver video is given)."""
    camera_width: int = 640
    camera_height: int = 480
    camera_fps: float = 30.0
    driver: Path | None = None
    """A driving video used instead of the webcam, played at its own frame rate."""
    loop_driver: bool = True
    """Start the driver video again when it ends (else stop)."""

    width: int = 1280
    """Output width in pixels."""
    height: int = 720
    """Output height in pixels."""
    fps: float = 30.0
    """Output frame rate (virtual camera, recorder, resend rate while the camera is lost)."""
    framing: FramingMode = "shoulders"
    """How the portrait fills the output, like a webcam picture of its person: ``shoulders``
    (the face a third of the height, eyes 40 % down, centred), ``head`` (the face half the
    height) or ``full`` (the whole portrait letterboxed). Chosen once per portrait from its
    face; where the output shows more than the photo, the photo's edge is extended (blurred
    mirror). A portrait folder's ``portraits.toml`` can set it per picture."""
    face: int | None = None
    """In a portrait with several faces (a group photo), frame and animate face N, counted
    from the left (None: the largest face)."""
    background: Background | tuple[Background, ...] = field(default_factory=Background)
    """What goes behind the portrait's person (:mod:`live.background`): ``keep``,
    ``blur[:STRENGTH]``, a colour (``#00ff00``, ``green``) or an image file; several (a list
    in the settings file, ``--background`` given again) are what the B key cycles through,
    the first at start, then ``keep``. Every output shows it (virtual camera, preview, MJPEG
    stream, recorder)."""
    feather: float = 0.03
    """Softness of the pasted face's edge, as a fraction of the crop size."""
    color_transfer: bool = False
    """Match the animated face's colours to the portrait around its edge."""

    vcam: bool = True
    """Send to a virtual camera (v4l2loopback, OBS Virtual Camera)."""
    vcam_device: str | None = None
    vcam_backend: str | None = None
    preview: bool = True
    """Show a preview window (skipped with a warning when there is no display)."""
    overlay: bool = True
    """Start with the preview overlay on (O toggles it)."""
    http: str | None = None
    """Serve the control page and MJPEG stream on ``HOST:PORT`` (``PORT`` alone binds
    127.0.0.1); every request needs the per-run token of the URL printed at start-up."""
    allow_remote: bool = False
    """Let ``http`` bind an address other devices reach (not the loopback): the page and the
    stream are then plain, unencrypted HTTP on the network."""
    jpeg_quality: int = 80
    record: Path | None = None
    """Also record the output to this video file (.mp4, .mov, .mkv, .webm or .gif)."""
    overwrite: bool = False
    """Replace an existing ``record`` or ``stats`` file (else it is kept and the run
    refused)."""

    duration: float | None = None
    """Stop after this many seconds (None: until Q, Ctrl-C or SIGTERM)."""
    stats: Path | None = None
    """Write the final statistics to this JSON file (checked before the run: a file name in
    an existing folder, none of the inputs, new unless ``overwrite``)."""

    auto_match: bool = False
    """Calibrate on the frame whose pose best matches the portrait's, within ``match_window``
    seconds after the face first holds still."""
    match_window: float = 2.0
    global_hotkeys: bool = False
    """Also listen to hotkeys system-wide (needs pynput; off by default because digits typed
    in other applications would switch portraits)."""
    remote: str | None = None
    """Animate on a ``mimicam serve`` server (``grpc://HOST:8001`` or ``http://HOST:8000``)
    instead of in this process; capture, tracking and compositing stay here."""
    remote_token: str | None = None
    """The server's ``--token`` (also ``MIMICAM_TOKEN``)."""
    fallback: str | None = None
    """With ``remote``: the engine that animates locally while the server is unreachable
    (``mesh``; None: hold the last pose)."""

    def __post_init__(self) -> None:
        checks = [
            (self.engine in ("mesh", "fomm"), "engine", "'mesh' or 'fomm'", self.engine),
            (self.width >= 16 and self.height >= 16, "width/height", ">= 16 pixels",
             f"{self.width}x{self.height}"),
            (0 < self.fps <= 240, "fps", "0 < fps <= 240", self.fps),
            (0 < self.camera_fps <= 240, "camera_fps", "0 < fps <= 240", self.camera_fps),
            (self.camera >= 0, "camera", "an index >= 0", self.camera),
            (self.camera_width >= 16 and self.camera_height >= 16, "camera_width/height",
             ">= 16 pixels", f"{self.camera_width}x{self.camera_height}"),
            (self.crop_size is None or self.crop_size >= 64, "crop_size", ">= 64",
             self.crop_size),
            (self.crop_scale > 0, "crop_scale", "> 0", self.crop_scale),
            (self.framing in FRAMINGS, "framing", " | ".join(FRAMINGS), self.framing),
            (self.face is None or self.face >= 1, "face", "a face number >= 1 (1 = the "
             "leftmost)", self.face),
            (0 <= self.feather <= 0.3, "feather", "0 .. 0.3", self.feather),
            (1 <= self.jpeg_quality <= 100, "jpeg_quality", "1 .. 100", self.jpeg_quality),
            (self.duration is None or self.duration > 0, "duration", "> 0 seconds",
             self.duration),
            (self.match_window >= 0, "match_window", ">= 0 seconds", self.match_window),
        ]
        for ok, name, expected, got in checks:
            if not ok:
                raise InputError(f"live setting {name} is out of range", expected=expected,
                                 got=repr(got))
        if self.http is not None:
            parse_host_port(self.http)
        backgrounds = self.backgrounds
        if not backgrounds:
            raise InputError("live setting background is empty",
                             expected="at least one background (keep, blur, a colour, an "
                             "image file)", got="[]")
        require_opaque(backgrounds, "mimicam live")
        object.__setattr__(self, "background",
                           backgrounds[0] if len(backgrounds) == 1 else backgrounds)
        if self.crop_size is not None:  # the shorthand for both engines' size
            object.__setattr__(self, ENGINE_OPTIONS,
                               self.engine_options.apply(crop_size=self.crop_size))

    @property
    def output_size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def backgrounds(self) -> tuple[Background, ...]:
        """``background`` as a tuple (the first is the one at start)."""
        bg = self.background
        return tuple(Background.parse(b) for b in bg) if isinstance(bg, tuple | list) \
            else (Background.parse(bg),)


@dataclass(frozen=True)
class EngineSettings:
    """A settings file holding only the ``[engine]`` part (``mimicam demo --config``)::

        [engine.mesh]
        smoothing = false
        lip_gain = 1.3
    """

    engine: str | None = None
    """The engine's name (``engine = "mesh"`` or ``[engine] name = "mesh"``; None: the
    command's own)."""
    engine_options: EngineOptions = field(default_factory=EngineOptions)
    """``[engine.mesh]`` and ``[engine.fomm]``."""
    background: Background = field(default_factory=Background)
    """What goes behind the portrait's person (``mimicam demo``: keep, blur, a colour or an
    image file; :mod:`live.background`)."""

    def __post_init__(self) -> None:
        require_opaque([self.background], "mimicam demo")


def parse_host_port(text: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``"HOST:PORT"``, ``":PORT"`` or ``"PORT"`` -> (host, port); port 0 picks a free one."""
    host, sep, port_text = str(text).rpartition(":")
    if not sep:
        host, port_text = "", str(text)
    host = host.strip("[]") or default_host
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise InputError("bad HTTP address", expected="HOST:PORT or PORT with a port 0-65535",
                         got=repr(text))
    return host, port
