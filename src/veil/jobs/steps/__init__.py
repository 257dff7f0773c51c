"""Built-in job steps: one module per step, each registering itself with
:func:`veil.jobs.registry.register`. Every module in this package is imported
when the registry is first used."""
