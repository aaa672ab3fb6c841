"""One benchmark per explainer x ranker on a fixed Cranfield pair."""
import pytest

from explainers import EXPLAINERS, build_explainer, collection_idf, make_pair

from .conftest import RANKERS, TRANSFORMER_PARAMS, run


@pytest.mark.parametrize("ranker", RANKERS)
@pytest.mark.parametrize("explainer", sorted(EXPLAINERS))
def test_explainer_speed(benchmark, explainer, ranker, bench_rankers, bench_pair, cran):
    r = bench_rankers[ranker]
    ok, why = EXPLAINERS[explainer].compatible(r)
    if not ok:
        pytest.skip(why)
    params = dict(TRANSFORMER_PARAMS.get(explainer, {})) if r.kind == "transformer" else {}
    if explainer == "idf_match":
        params["idf"] = collection_idf(cran)
    ex = build_explainer(explainer, r, **params)
    pair = make_pair(r, *bench_pair)
    out = run(benchmark, lambda: ex.attribute_pair(pair), rounds=3 if r.kind == "transformer" else 5)
    benchmark.extra_info.update(forward_passes=out.forward_passes, backward_passes=out.backward_passes,
                                n_doc=len(pair.doc_tokens))
