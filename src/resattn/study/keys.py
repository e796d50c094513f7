"""The names a study is stored under, defined once: trial and study user-attribute keys, and the
default storage. Standard library only, so the command line can read them without importing optuna
or torch.

A trial's user attributes (DESIGN.md §4) — every one optional for trials made by older versions:

========================  ======================================================================
``spec``                  the trained :class:`~resattn.model.spec.NetSpec` as JSON
``placement``             ``["s1=pattern2[eca]", …]``: each slot's block label
``params`` / ``flops``    parameter count, forward FLOPs of one image
``device``                where it trained
``precision``             ``bf16`` or ``fp32``, as chosen for this run (:mod:`resattn.training.precision`)
``channels_last``         whether it trained in channels_last memory format
``compiled``              whether it trained through ``torch.compile``
``arch_hash``             canonical hash of the spec (:mod:`resattn.study.dedup`)
``epochs_run``            epochs trained
``seconds``               training seconds
``images_per_second``     training throughput
``fail_reason``           why a trial failed, or why it was pruned
``design``                the baseline design a queued trial is (``all-residual``, …)
``requeue_of``            a baseline queued again: the trial number of the attempt it replaces
``duplicate_of``          the trial whose architecture this one repeats (not trained again)
``saved_seconds``         the training time that saved
``val_correct``           per validation image (the study's seeded split, in order), whether the last
                          epoch classified it right: base64 of the packed bits
``hostname``/``worker_pid``  the process that ran it
``init``                  warm-started trials only (``train.init`` a checkpoint): ``{"init", "sha256",
                          "loaded", "new_attention", "new_other", "unused", "head_reset"}``; absent
                          for trials trained from scratch
========================  ======================================================================

The study records its space and recipe (``train.init`` included), and, for a warm-started study, the
checkpoint it starts from as ``resattn.init`` (``{"init", "sha256", "form", "tensors"}``).
"""

from __future__ import annotations

__all__ = [
    "ARCH_HASH",
    "CHANNELS_LAST",
    "COMPILED",
    "CONFIRM_PREFIX",
    "CONFIRM_SUMMARY",
    "DEFAULT_STORAGE",
    "DESIGN",
    "DEVICE",
    "DUPLICATE_OF",
    "EPOCHS_RUN",
    "FAIL_REASON",
    "FLOPS",
    "HOSTNAME",
    "IMAGES_PER_SECOND",
    "INIT",
    "PARAMS",
    "PLACEMENT",
    "PRECISION",
    "REQUEUE_OF",
    "SAVED_SECONDS",
    "SECONDS",
    "SPEC",
    "STUDY_INIT",
    "STUDY_READY",
    "STUDY_RECIPE",
    "STUDY_RECIPE_FINGERPRINT",
    "STUDY_SPACE",
    "STUDY_SPACE_FINGERPRINT",
    "STUDY_VERSION",
    "VALIDATE_PREFIX",
    "VAL_CORRECT",
    "WORKER_PID",
]

#: Where studies are stored when no ``--storage`` is given.
DEFAULT_STORAGE = "sqlite:///studies/resattn.db"

# ------------------------------------------------------------------------------ trial attributes
SPEC = "spec"
PLACEMENT = "placement"
PARAMS = "params"
FLOPS = "flops"
DEVICE = "device"
PRECISION = "precision"
CHANNELS_LAST = "channels_last"
COMPILED = "compiled"
ARCH_HASH = "arch_hash"
EPOCHS_RUN = "epochs_run"
SECONDS = "seconds"
IMAGES_PER_SECOND = "images_per_second"
FAIL_REASON = "fail_reason"
DESIGN = "design"
REQUEUE_OF = "requeue_of"
DUPLICATE_OF = "duplicate_of"
SAVED_SECONDS = "saved_seconds"
VAL_CORRECT = "val_correct"
HOSTNAME = "hostname"
WORKER_PID = "worker_pid"
INIT = "init"

# ------------------------------------------------------------------------------ study attributes
STUDY_SPACE = "resattn.space"
STUDY_SPACE_FINGERPRINT = "resattn.space_fingerprint"
STUDY_RECIPE = "resattn.recipe"
STUDY_RECIPE_FINGERPRINT = "resattn.recipe_fingerprint"
STUDY_VERSION = "resattn.version"
#: A warm-started study's checkpoint: ``{"init", "sha256", "form", "tensors"}``.
STUDY_INIT = "resattn.init"
#: Written last by the process that creates a study: its space, recipe and baselines are all stored.
STUDY_READY = "resattn.ready"
#: ``resattn confirm``'s results: ``resattn.confirm.<setting>.<arch_hash>.<seed>`` and ``….summary``.
CONFIRM_PREFIX = "resattn.confirm."
CONFIRM_SUMMARY = CONFIRM_PREFIX + "summary"
#: ``resattn validate``'s results: ``resattn.validate.<trial>.<epochs>.<seed>``, ``….kendall_tau``, …
VALIDATE_PREFIX = "resattn.validate."
