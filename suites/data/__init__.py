"""Collections and their file formats: the shipped ones (Cranfield in `cranfield/`, the synthetic one) and
ir_datasets ids, loaded into `collections.Collection` (queries, documents, judgments, splits, candidates).

May import: rankers (tokenisation, the BM25 index) and the standard library; nothing else of suites."""
