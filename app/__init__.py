"""The composition root: the ``consultas`` command, ``serve`` and the wiring of sources, workers, bot
and web. Nothing imports this package; it imports every other one.
"""
