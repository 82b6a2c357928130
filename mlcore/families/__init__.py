"""Model families. Each implements `mlcore.families.base.ChurnModel`."""
import os

# oneDNN (torch's CPU kernels for bf16) keeps every compiled kernel with its buffers, one per
# operation and input shape, up to 1,024 of them by default: 10-20 MB more resident memory for
# each new (batch rows x tokens) shape the encoder sees, and length-sorted batches make nearly
# every batch a new shape. A daily re-run of 100,000 customers grew the scoring process by 150 MB,
# and a long-lived worker would keep growing by GBs. With 16 kernels memory stays flat, and MiniLM
# encoding and bf16 training steps ran as fast as with 1,024. oneDNN reads the variable once, at
# its first kernel, so it is set here, before any family runs torch. An operator's own value wins.
ONEDNN_CACHE_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
ONEDNN_CACHE_DEFAULT = "16"
os.environ.setdefault(ONEDNN_CACHE_ENV, ONEDNN_CACHE_DEFAULT)
