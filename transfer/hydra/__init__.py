"""Hydra models (trans-tokenization, Remy et al. 2024): one transformer body shared by several
languages, each language with its own tokenizer, embedding table and LM head, so that one
model reads one language and writes another (issue #29, part B).

``model`` the module (the body plus a table and head per language), ``store`` its folder
(the body stored once) and the export of one plain Hugging Face folder per language,
``train`` the training loop (each batch in one language, through its table and head),
``stage`` the ``hydra`` stage, ``run`` the run of several languages' stages plus that one,
``translate`` reading with one table and writing with another head.
"""
