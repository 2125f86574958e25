"""The run's settings (``AdaptConfig``), the checks that refuse bad input before the first
stage, and safe names for paths and registries."""
