"""Acceptance of the shipped graphs' textures: the top floor of `nodes/`.

It runs the shipped graphs (`chain.run_chain`, through `graphflow.run`) and judges every instance's result
with the measures of `nodes.measures` against the swatch repeated at its real size (`acceptance`: issue 13;
`photo`: issue 25's tile seams and invented colours). It may import every stage package; no package of
`nodes/` imports it (the stages decide with `nodes.measures` alone). Its users: the acceptance tests
(tests/quality), bench/quality.py and docs/make_quality_figures.py.
"""
