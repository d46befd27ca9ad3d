"""spdnn: the Sparse Deep Neural Network Graph Challenge as a reproducible workflow."""
__version__ = "0.1.0"
