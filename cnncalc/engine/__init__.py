"""The numpy engine: Keras-exact ops, layers and the model."""
