"""Data: token shards, the batch loader, the embedded default corpus and Hugging Face preparation.

    data = hydra.utils.instantiate(cfg.data)                 # -> data.TokenData (configs/data/*.yaml)
    loader = data.loader.BatchLoader(data.train, batch_size, seq_len, seed)
    python -m data.prepare data=slimpajama_6b                 # download + tokenize once, resumable

Modules: tokens (TokenData, unigram_entropy), shards (file format, prepared-dir loader),
loader (BatchLoader, eval_batches), embedded (stdlib corpus), prepare (HF datasets -> shards).
The package root imports no torch, so that tokenizer worker processes start fast.
"""
from data.tokens import ShardedTokens, TokenData, unigram_entropy

__all__ = ["ShardedTokens", "TokenData", "unigram_entropy"]
