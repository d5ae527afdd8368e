"""The metadata store under ``<root>/.metadata``: versioned files, atomic writes, a lease lock."""
