"""What crawler/, filters/ and pipelines/ all use, and that belongs to none of them.

The document schema (``schema``), atomic file writes and shards (``writers``), URL helpers
(``urls``), grouping texts by size (``batching``), text normalisation (``normalize``), MinHash
signatures (``minhash``), the language-model loader (``lm``) and joining a Ray cluster
(``ray_cluster``). Nothing here imports from crawler/, filters/ or pipelines/, so each of them can
import from here without a cycle.
"""
