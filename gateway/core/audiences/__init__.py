"""Marketers' audience counts (clause 3(2) item 1): the index of consented people
(``index``, kept by ``indexer``, read through ``view``), what a count becomes before anyone
sees it (``release``) and the query API's guards (``service``). docs/audiences.md explains the
guarantees."""
