"""The training state machine: one construct per step, composed in ``pipeline``."""
