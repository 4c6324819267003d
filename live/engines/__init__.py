"""Animation engines: one interface, several implementations (``mesh``, ``fomm``)."""

from live.engines.base import Engine, create_engine, engine_names

__all__ = ["Engine", "create_engine", "engine_names"]
