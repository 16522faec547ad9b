import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def model():
    """A 2-layer random model with random LayerNorm weights and biases."""
    import lensarith as la

    return la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=0)


@pytest.fixture(scope="session")
def model3():
    import lensarith as la

    return la.tiny_model(n_layers=3, d_model=48, n_heads=4, seed=1)


@pytest.fixture(scope="session")
def folded():
    """A random model with the final LayerNorm folded into the unembedding (LNPre), as
    TransformerLens's ``logit_attrs`` assumes."""
    import lensarith as la

    m = la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=2)
    m.process_weights_(fold_ln=True, center_writing_weights=False, center_unembed=False)
    return m


@pytest.fixture(scope="session")
def gemma():
    """The real Gemma 3 270M (``la.load_model("gemma-3-270m")``, converted once into the cache)."""
    import lensarith as la

    return la.load_model("gemma-3-270m")


@pytest.fixture(scope="session")
def smol():
    """The real SmolLM2 135M Instruct (``la.load_model("smollm2-135m")``)."""
    import lensarith as la

    return la.load_model("smollm2-135m")


@pytest.fixture(scope="session")
def prompts():
    import lensarith as la

    return la.build_prompts("capitals", n=4) + la.build_prompts("past", n=3) + la.build_prompts("uppercase", n=2)


def state_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def hooks_left(model) -> int:
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())
