"""tokenizer_builds"""
