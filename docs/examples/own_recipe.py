"""The "adding a recipe" guide's example, run by tests/test_docs.py: a user recipe with no_grad,
provenance and per-row values for Replace."""

import torch

import lensarith as la
from lensarith.core import provenance


@la.register_recipe("mlp_norms", overwrite=True)
def mlp_norms(model, prompts, *, position="last"):
    """Norm of every MLP's output at each prompt's last token: [layer, batch]."""
    batch = la.as_batch(model, prompts)
    sites = [la.Site("mlp_out", layer, position) for layer in range(model.cfg.n_layers)]
    with torch.no_grad():                                   # no graph: a plain tensor, no grad_fn
        got = la.collect(model, batch, sites)
    norms = torch.stack([got[s] for s in sites]).norm(dim=-1)
    meta = provenance(model, recipe="mlp_norms", hooks=[s.hook_name for s in sites], n=len(batch))
    return la.Result({"norm": norms}, {"norm": ("layer", "batch")},
                     labels={"layer": list(range(model.cfg.n_layers))}, meta=meta)


def swap_mlp_outputs(model, prompts, *, layer, batch_size=8):
    """Each prompt's MLP output at ``layer`` replaced by the next prompt's (a per-row value):
    the answer's rank at the output, control vs swapped."""
    batch = la.as_batch(model, prompts)
    site = la.Site("mlp_out", layer, "last")
    with torch.no_grad():
        own = la.collect(model, batch, [site])[site]                  # [batch, d_model]
        other = own.roll(1, dims=0)                                   # row i gets row i-1's output
        ranks = []
        for start in range(0, len(batch), batch_size):               # a per-row value must match the
            chunk = batch[start:start + batch_size]                   # rows it is applied to: one
            value = other[start:start + len(chunk)]                   # sub-batch at a time
            logits = la.run_with_interventions(model, chunk, [la.Replace(site, value)])
            answer = logits.gather(1, chunk.answer_ids[:, None])
            ranks.append((logits > answer).sum(-1))
    return la.Result({"rank": torch.cat(ranks)}, {"rank": ("batch",)},
                     meta=provenance(model, recipe="swap_mlp_outputs", layer=layer, hook=site.hook_name))


if __name__ == "__main__":
    model = la.load_model("organism")
    res = la.run_recipe("mlp_norms", model, la.build_prompts("past", n=32))
    print(res.tensors["norm"].shape, res.tensors["norm"].grad_fn, res.meta["model"], res.meta["config_hash"][:8])
    swap = swap_mlp_outputs(model, la.build_prompts("capitals", n=32), layer=6)
    print("median rank of the answer with the next prompt's MLP 6:", swap.tensors["rank"].median().item())
