"""The organism: a small GPT-2-architecture model trained on a synthetic corpus.

- ``lensarith.organism.corpus``: the seeded corpus generator (``Corpus``, ``CorpusMix``);
- ``lensarith.organism.train``: ``TrainConfig``, ``PRESETS``, ``train`` and the fused training forward;
- ``lensarith.organism.evaluate``: ``evaluate`` (the card's table) and ``format_table``.

The shipped weights live in ``data/organism`` and load with ``lensarith.load_model("organism")``.
Submodules are imported on use, so ``import lensarith.organism`` stays light.
"""
