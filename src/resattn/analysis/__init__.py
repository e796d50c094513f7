"""Analysis of stored studies: inspection and the placement map (:mod:`~resattn.analysis.inspect`),
the HTML report (:mod:`~resattn.analysis.report`) and proxy fidelity (:mod:`~resattn.analysis.fidelity`).
Depends on :mod:`resattn.study` (and below); nothing but the CLI depends on it."""
