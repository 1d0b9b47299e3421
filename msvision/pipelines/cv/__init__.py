"""Computer-vision pipelines."""
