"""Stage ``corpus``: streamed readers of every corpus format, the Bible database and the
one train/dev/test split that every later stage reads."""
