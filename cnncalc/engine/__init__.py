"""The numpy engine: Keras-exact ops, layers and the model (forward and backward), losses, optimizers and fit."""
