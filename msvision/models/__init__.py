"""Model loaders: read a ModelScope model directory (configuration + weights) and build its C-core graph."""
