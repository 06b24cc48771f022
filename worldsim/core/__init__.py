"""The base every other part stands on: configs, checkpoint I/O, safe outputs, the weights registry,
runtime (devices, seeds) and video writing. It imports nothing else of worldsim."""
