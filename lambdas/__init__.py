"""Lambda handlers: each parses its event, delegates to ``counting``, and reports."""
