"""``edgeseg station``: one file for a station — several cameras in one process, one HTTP
server (live views, triggers, health, metrics, REST), reload without stopping.

See ``docs/tutorials/run-a-station.md`` and ``docs/reference/station.md``.
"""

from edgeseg.station.config import CameraConfig, HttpConfig, StationConfig, load_station
from edgeseg.station.station import Station

__all__ = ["CameraConfig", "HttpConfig", "Station", "StationConfig", "load_station"]
