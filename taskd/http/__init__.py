"""The HTTP layer: imports the engine, never the other way round."""
