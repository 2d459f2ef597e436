"""Vector tiles (MVT) over gridmap's layers: ST_AsMVT layer SQL, TileJSON and a cache.

The tile router arrives with the command-center issue; this package is where it lives so that
`api` can mount it without importing anything from `gridmap` that the tiles do not own.
"""
