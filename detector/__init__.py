"""A torchvision object detector trained and served in SageMaker's PyTorch containers.

This package is the training job's source directory and the model's inference code: it
imports only the standard library, torch, torchvision, Pillow and numpy, which those
containers have (never counting_core, boto3 or pydantic, which they do not).
See /work/notes/detector-contract.md and docs/detector.md.
"""
