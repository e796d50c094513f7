"""Training: datasets held on the device (:mod:`~resattn.training.data`), the fast proxy loop
(:mod:`~resattn.training.loop`), full training of one architecture (:mod:`~resattn.training.retrain`)
and the loop benchmark (:mod:`~resattn.training.bench`). Depends on :mod:`resattn.model` only."""
