"""Task datasets and the paper's prompts: pure Python, no torch and no TransformerLens."""

from ._datasets import FILLER_WORDS as FILLER_WORDS
from ._datasets import TASKS as TASKS
from ._datasets import WORD_PATTERN as WORD_PATTERN
from ._datasets import Example as Example
from ._datasets import Format as Format
from ._datasets import TaskSpec as TaskSpec
from ._datasets import build_prompts as build_prompts
from ._datasets import default_vocab as default_vocab
from ._datasets import load_pairs as load_pairs
from ._datasets import random_token_contexts as random_token_contexts
from ._scoring import DROP_REASONS as DROP_REASONS
from ._scoring import classify_items as classify_items
from ._scoring import scoring_counts as scoring_counts
from ._scoring import scoring_rule as scoring_rule

__all__ = ["Example", "TaskSpec", "TASKS", "load_pairs", "build_prompts", "random_token_contexts", "default_vocab",
           "FILLER_WORDS", "WORD_PATTERN", "Format", "DROP_REASONS", "classify_items", "scoring_counts", "scoring_rule"]
