"""Configuration files shipped with poisonguard (read with importlib.resources)."""
