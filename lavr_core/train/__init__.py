"""Training commands for LaVR's trainable parts (``python -m lavr_core.train <command> ...``).

Commands are listed in ``lavr_core.train.__main__.COMMANDS``; each is a module with
``add_arguments(parser)`` and ``main(args) -> exit code``.
"""
