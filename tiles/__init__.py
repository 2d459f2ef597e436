"""Vector tiles (MVT) over gridmap's layers: the layer SQL (`tiles.layers`), rendering and
TileJSON (`tiles.render`), a per-process cache dropped on change (`tiles.cache`) and the HTTP
router the API mounts (`tiles.router`). See docs/tiles.md."""
