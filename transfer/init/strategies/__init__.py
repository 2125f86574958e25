"""One module per embedding initialization strategy, each registering itself with
``@register``."""
