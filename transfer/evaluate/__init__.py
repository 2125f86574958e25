"""Stage ``evaluate``: bits per byte of causal models, the masked-LM loss of encoders."""
