"""Pure-Python domain logic for object counting with SageMaker.

Nothing in this package calls AWS: the Lambda handlers, the state machine's
steps and the ``counting`` command line all delegate here, so every rule
(manifest validation, thresholds, pixel maths, drawing) is written once and
tested without an account. The command line lives in the `counting` package beside it.
"""
