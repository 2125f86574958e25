"""After the stages: the run's result, manifest, model card, registry, strategy
comparisons and cache clean-up."""
