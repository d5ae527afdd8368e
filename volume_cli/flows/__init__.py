"""Use cases that combine the engines and own their follow-up steps.

The CLI parses, calls one of these (or an engine directly) and renders; a
decision such as "which models does gc protect" or "the runtime copy is
refreshed after an install" lives here, once, not in a command.
"""
