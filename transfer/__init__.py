"""vocab-transfer: adapt a pretrained language model to a new language.

The library is plain Python (no Prefect imports). Each stage lives in its own module;
stages talk through small typed values and files (see ``transfer.engine.cache``).
"""

__version__ = "0.1.0"
