"""Models: the Llama decoder (llama.py) and its fused ops (kernels/, one op per file).

    from models.llama import Llama
    model = Llama(vocab_size=50304, n_layer=12, n_head=12, d_model=768, max_seq_len=512)
"""
