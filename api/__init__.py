"""The FastAPI app: thin routers over gridmap services."""
