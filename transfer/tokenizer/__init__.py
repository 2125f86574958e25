"""Stage ``tokenizer``: train the target tokenizer (``tokenizer_builds``), map special and
byte tokens by role, and report fertility."""
