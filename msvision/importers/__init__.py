"""Importers: networks that exist only as another framework's graph file, turned into msvision graphs."""
