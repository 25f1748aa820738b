"""GPT-2's tokenizer built offline from tests/data/gpt2/gpt2.tiktoken.gz (see its README).

    from tests.gpt2_tokenizer import gpt2_folder
    folder = gpt2_folder(tmp_path)   # vocab.json + merges.txt + tokenizer.json: what the hub's `gpt2` holds

A .tiktoken file lists each token's bytes with its rank; byte-level BPE merges in rank order, so the
merge that makes a token of rank r is the pair its bytes reduce to when only ranks below r may merge.
Tokens are written in GPT-2's byte-to-unicode alphabet (printable bytes as themselves, the others
shifted above 255), which is what `tokenizers`' ByteLevel pre-tokenizer and decoder expect.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

SOURCE = Path(__file__).resolve().parent / "data" / "gpt2" / "gpt2.tiktoken.gz"
EOS = "<|endoftext|>"


def _byte_alphabet() -> dict[int, str]:
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}


def _merge_of(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        pairs = [(ranks.get(a + b, rank), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        best, i = min(pairs)
        if best >= rank:
            break
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    assert len(parts) == 2, f"rank {rank}: {token!r} is no merge of two lower-ranked tokens"
    return parts[0], parts[1]


def gpt2_tokenizer() -> Tokenizer:
    ranks = {}
    for line in gzip.open(SOURCE, "rt"):
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    alphabet = _byte_alphabet()
    spell = lambda raw: "".join(alphabet[b] for b in raw)  # noqa: E731
    merges = [tuple(map(spell, _merge_of(t, r, ranks))) for t, r in sorted(ranks.items(), key=lambda kv: kv[1])
              if len(t) > 1]
    tokenizer = Tokenizer(models.BPE(vocab={spell(t): r for t, r in ranks.items()} | {EOS: len(ranks)},
                                     merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([EOS])
    return tokenizer


def gpt2_folder(out: Path) -> Path:
    """`out` laid out as the hub's `gpt2` tokenizer files: vocab.json + merges.txt, tokenizer.json (the same
    tokenizer in one file) and a tokenizer_config.json naming the class, so AutoTokenizer loads it."""
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = gpt2_tokenizer()
    tokenizer.save(str(out / "tokenizer.json"))
    model = json.loads(tokenizer.to_str())["model"]
    (out / "vocab.json").write_text(json.dumps(model["vocab"] | {EOS: tokenizer.token_to_id(EOS)}))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(
        f"{m}\n" if isinstance(m, str) else f"{m[0]} {m[1]}\n" for m in model["merges"]))
    (out / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024}))
    return out
