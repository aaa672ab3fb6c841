"""One-line stderr warnings for `rexbench explain`: where the ranker reads the given text otherwise than
written (words it does not know, words past its length)."""
import sys


def warn_oov(ranker: str, oov: dict, n_doc: int) -> None:
    """One stderr line when the ranker reads some of the query or document as <unk>."""
    if oov.get("query"):
        print(f"rexbench: warning: query words unknown to {ranker} (read as <unk>): {', '.join(oov['query'])}",
              file=sys.stderr)
    if oov.get("doc_fraction", 0) > 0:
        print(f"rexbench: warning: {oov['doc_fraction']:.0%} of the {n_doc} document words are unknown to {ranker} "
              "(read as <unk>)", file=sys.stderr)


def warn_truncated(ranker, pair, q_text: str, d_text: str) -> None:
    """One stderr line per side the ranker cut (`--json` records it too: query_truncated, truncated)."""
    if pair.query_truncated:
        print(f"rexbench: warning: the query has {len(ranker.units(q_text))} words; {ranker.name} reads the first "
              f"{len(pair.query_tokens)} (max_query_len {ranker.max_query_len})", file=sys.stderr)
    if pair.truncated:
        print(f"rexbench: warning: the document has {len(ranker.units(d_text))} words; {ranker.name} reads the "
              f"first {len(pair.doc_tokens)} (max_doc_len {ranker.max_doc_len} words, "
              f"max_length {getattr(ranker, 'max_length', '-')} pieces)", file=sys.stderr)
