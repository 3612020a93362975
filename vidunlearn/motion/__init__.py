"""The human-motion benchmark (issue 22): a procedural motion world on HumanML3D's 22-joint
skeleton (:mod:`.skeleton`, :mod:`.actions`, :mod:`.world`) and a deterministic judge that reads
which action a motion shows (:mod:`.judge`). See docs/motion-benchmark.md.

Not built yet: the MoMask-architecture model trained on this world, LCR, and the motion eval.
"""
