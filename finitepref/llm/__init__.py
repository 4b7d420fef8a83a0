"""Language-model trainer using the paper's losses from :mod:`finitepref.losses`.

Submodules: :mod:`.config` (typed YAML configs), :mod:`.data` (TL;DR / UltraFeedback loaders),
:mod:`.logprobs` (sequence log-probs, exact enumeration), :mod:`.models` (policy, reference, reward,
sampling), :mod:`.algorithms` (batch losses), :mod:`.train` (the loop), :mod:`.evaluate` (Table 2
columns and judges), :mod:`.memory` (dry-run estimate), :mod:`.tiny` (in-code CPU test world).
Importing this package does not import ``transformers``; see ``docs/llm.md``.
"""
