"""The machinery every stage shares: stage specs and builders, the content-addressed cache,
per-stage code versions, file identities, the stage graph and device choice."""
