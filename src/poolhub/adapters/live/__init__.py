"""The live-state adapter: the in-memory directory, its write-behind queues and the change feed."""

from poolhub.adapters.live.directory import LiveDirectory
from poolhub.adapters.live.feed import SqlChangeLog, SqlChangeSource
from poolhub.adapters.live.writebehind import SqlLiveStore, save_isolating

__all__ = ["LiveDirectory", "SqlChangeLog", "SqlChangeSource", "SqlLiveStore", "save_isolating"]
