"""Animation engines: one interface, several implementations (``mesh``, ``fomm``)."""

from live.engines.base import Engine, EngineOptions, create_engine, engine_names
from live.engines.options import FommOptions, MeshOptions

__all__ = ["Engine", "EngineOptions", "FommOptions", "MeshOptions", "create_engine",
           "engine_names"]
