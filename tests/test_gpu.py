"""Checks that need a CUDA device (skipped elsewhere): CUDA-graph decoding and bf16 fused attention."""
import pytest
import torch

from model import Transformer, TransformerConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("pe", ["rope", "learned", "alibi"])
def test_cuda_graph_decoding_equals_full_recompute(pe):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64,
                                          pos_encoding=pe)).cuda().eval()
    with torch.no_grad():
        model.transformer.wte.weight.mul_(20)  # sharpen the random model: no near-ties for greedy decoding
    prompt = torch.randint(0, 65, (2, 5), device="cuda")
    graphed = model.generate(prompt, 150, temperature=0)  # past block_size: the window slides
    ref = prompt
    with torch.no_grad():
        for _ in range(150):
            window = ref if pe != "learned" else ref[:, -64:]
            ref = torch.cat([ref, model(window)[0][:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(graphed, ref)


def test_bf16_fused_attention_matches_manual():
    x = torch.randint(0, 65, (4, 64), device="cuda")
    outs = []
    for attention in ("manual", "sdpa"):
        torch.manual_seed(0)
        model = Transformer(TransformerConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64,
                                              attention=attention)).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outs.append(model(x)[0].float())
    assert ((outs[0] - outs[1]).norm() / outs[1].norm()).item() < 1e-2  # bf16 operands: 1e-3 to 1e-2
