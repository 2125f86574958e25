"""Stage ``source``: load the source model (packaged alias, GGUF, folder or hub id) and
save a clean Hugging Face copy."""
