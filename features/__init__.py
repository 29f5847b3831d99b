"""Microstructure features and labels (issue 3): pure numpy kernels shared by training and live."""
