"""The organism: a small GPT-2-architecture model trained on a synthetic corpus.

- ``lensarith.organism.corpus``: the seeded corpus generator (``Corpus``, ``CorpusMix``);
- ``lensarith.organism.config``: ``TrainConfig``, ``PlantedSpec`` and the ``PRESETS`` of the shipped models;
- ``lensarith.organism.train``: ``train`` (the loop), the fused training forward, the planted objectives and
  ``make_organism``, the one entry point (train, then write the card) behind ``lensarith organism-train``
  and ``python -m lensarith.organism.train``;
- ``lensarith.organism.evaluate``: ``evaluate`` (the card's table), ``format_table`` and the planted targets;
- ``lensarith.organism.card``: ``write_card`` and ``write_planted_card`` (``card.md`` and ``table.json``).

The shipped weights live in ``data/organism`` and load with ``lensarith.load_model("organism")``.
Submodules are imported on use, so ``import lensarith.organism`` stays light.
"""
