"""gridmap: geospatial platform for city grid management (网格化管理)."""

__version__ = "0.1.0"
