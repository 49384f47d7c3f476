"""CDK stacks (thin: they compose components and wire grants) and their components."""
