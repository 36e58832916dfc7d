"""The step-0 gradient norm of the WikiText-2 model shapes at initialisation, on a CPU: without word
dropout, with one window's first token zeroed (what the old word dropout did to a dropped first
token), and with word dropout 0.1 as it is now (a first token is never dropped).
python results/recipes/wt2-gnorm/zero_first_token.py > results/recipes/wt2-gnorm/zero_first_token.json"""
import json, sys, torch
sys.path.insert(0, ".")
from model import Transformer, TransformerConfig

def grad_norm(model, x, y, zero_first=False):
    model.zero_grad(set_to_none=True)
    embed = model.embed
    if zero_first:
        def zeroed(idx, pos):
            e = embed(idx, pos).clone()
            e[0, 0] = 0  # sequence 0's first token dropped
            return e
        model.embed = zeroed
    try:
        _, loss = model(x, y, return_logits=False)
        loss.backward()
    finally:
        model.embed = embed
    return torch.sqrt(sum(p.grad.double().square().sum() for p in model.parameters())).item()

out = {"torch": torch.__version__, "rows": []}
for n_layer, n_embd, n_head in ((6, 512, 8), (12, 384, 6)):
    shape = dict(vocab_size=33280, real_vocab_size=33278, block_size=256, n_layer=n_layer,
                 n_head=n_head, n_embd=n_embd, pos_encoding="rope", dropout=0.0)
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randint(0, 33278, (4, 256), generator=g) for _ in range(2))
    row = {"shape": f"{n_layer}x{n_embd}"}
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(**shape)).train()
    row["no word dropout"] = grad_norm(model, x, y)
    row["first token of one window zeroed (the old rule's drop)"] = grad_norm(model, x, y, zero_first=True)
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(**shape, word_dropout=0.1)).train()
    torch.manual_seed(1)
    row["word dropout 0.1, first tokens kept (the rule now)"] = grad_norm(model, x, y)
    out["rows"].append(row)
    print(row, file=sys.stderr)
print(json.dumps(out, indent=1))
