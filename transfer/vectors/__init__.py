"""Stages ``fasttext`` and ``align``: static word vectors for both languages, dictionaries
(file or eflomal-induced) and their Procrustes alignment; token vectors from word vectors."""
