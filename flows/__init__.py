"""Prefect flows, tasks, deployments and the CLI: thin wrappers over transfer/."""
