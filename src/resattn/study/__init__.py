"""The study: search spaces and recipes (:mod:`~resattn.study.space`, :mod:`~resattn.study.recipe`,
read by :mod:`~resattn.study.tomlfile`), storages (:mod:`~resattn.study.storage`), the trial record's
keys (:mod:`~resattn.study.keys`), creating a study (:mod:`~resattn.study.setup`), the trial objective
(:mod:`~resattn.study.objective`), the trial loop (:mod:`~resattn.study.loop`), parallel workers
(:mod:`~resattn.study.workers`) and the search itself (:mod:`~resattn.study.search`). Depends on
:mod:`resattn.model` and :mod:`resattn.training`."""
