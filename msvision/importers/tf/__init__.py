"""TensorFlow frozen graphs without TensorFlow: the GraphDef wire-format reader (``graphdef``) and the importer
that lowers a pruned, folded GraphDef onto the C core's ops (``importer``)."""
