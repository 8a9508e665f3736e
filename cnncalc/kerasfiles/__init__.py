"""Keras files: read .keras / .h5 / .weights.h5 with zipfile + json + h5py, write .keras, build models."""
