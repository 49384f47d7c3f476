"""The state machines' shared kit: named retry policies, run reports (notifications), and the
Batch Transform task; the training and bulk-counting pipelines compose their states from it."""
