"""bertc: a graph-rewriting compiler for TensorFlow BERT-family models."""

__version__ = "0.1.0"
