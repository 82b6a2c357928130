"""The `bert` family: a pretrained BERT encoder fused with numeric features (see docs/bert.md)."""
from mlcore.families.bert.config import (
    BertCheckpointError,
    BertConfig,
    check_checkpoint,
    load_encoder,
    load_tokenizer,
    packaged_minilm_path,
)
from mlcore.families.bert.family import BertFamily
from mlcore.families.bert.tiny import write_tiny_checkpoint

__all__ = [
    "BertCheckpointError",
    "BertConfig",
    "BertFamily",
    "check_checkpoint",
    "load_encoder",
    "load_tokenizer",
    "packaged_minilm_path",
    "write_tiny_checkpoint",
]
