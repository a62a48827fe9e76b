"""Tasks: what a task trains on, how a batch becomes a loss, and how it is evaluated."""
