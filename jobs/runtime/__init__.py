"""What training and evaluation both run on: the device (devices.py), torchrun and DDP (distributed.py), mixed
precision (amp.py), checkpoint files (checkpoint.py), and the model built and loaded from them (weights.py)."""
