"""The CKA paper (arXiv 2307.14781): the readings study and the verdict page, and the paper's printed tables."""
