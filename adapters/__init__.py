"""The storey between the Lambda handlers and the pure core: where AWS is called.

The handlers (``lambdas/``) import these modules; these import ``counting_core`` and the AWS
SDK and Powertools; neither the core nor the stacks import them (import-linter keeps it so).
Each Lambda asset carries only the modules of this package its handler imports.
"""
