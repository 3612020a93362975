"""The human-motion benchmark (issue 22): a procedural motion world on HumanML3D's 22-joint
skeleton (:mod:`.skeleton`, :mod:`.actions`, :mod:`.world`), a deterministic judge that reads
which action a motion shows (:mod:`.judge`), and a small MoMask-architecture text-to-motion model
trained on the world (:mod:`.rvq`, :mod:`.masked`, :mod:`.text`, :mod:`.momask`, :mod:`.train`;
shipped in models/momask-world), Latent Code Replacement (:mod:`.lcr`) and UCE on the text path
(:mod:`.uce`), and the before / after measurements (:mod:`.metrics`) behind ``vidunlearn eval`` on
a MoMask-layout folder (:mod:`.evalrun`); ``apply`` and ``verify`` of a MoMask folder live in
:mod:`.apply` and :mod:`.verify`. See docs/motion-benchmark.md.
"""
