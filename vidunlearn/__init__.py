"""vidunlearn: remove unsafe concepts from open text-to-video diffusion models.

A training-free, closed-form weight edit: a refusal direction is estimated from a handful of
unsafe/safe prompt pairs and projected out of the weights that read the text conditioning.
The library entry points live in :mod:`vidunlearn.api`; the CLI in :mod:`vidunlearn.cli`.
"""

__version__ = "0.1.0"
