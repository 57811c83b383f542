"""`phaita demo`: :func:`phaita.demo.runner.run_demo` runs it.

- :mod:`phaita.demo.session` -- what every step shares (models, faults, environment, console);
- :mod:`phaita.demo.loader_steps` -- steps 1-4, the loader;
- :mod:`phaita.demo.component_steps` -- steps 5-7, the PHAITA components.
"""
