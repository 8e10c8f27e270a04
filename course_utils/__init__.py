"""course_utils: the plumbing of the course "CNNs part II - beyond image classification".

Modules, bottom to top (each imports only those above it in this list; ``tests/test_import_layers.py``
checks it): ``config`` (run mode, step budget, course folder, device, seed, recorded figures),
``tensors`` (plain tensors out of ``tv_tensors``), ``boxes`` (formats, IoU, NMS),
``data`` (synthetic shapes, real-dataset loaders, COCO export), ``metrics`` (COCO and VOC AP,
segmentation IoU), ``models`` (the detectors behind ``build_detector``, backbones, offline
fallback), ``train`` (fit/evaluate loop, checkpoints and their cache), ``benchmark`` (FLOPs,
throughput, AP by size), ``viz`` (drawing, plots, widgets), ``grading`` (checks for autograder
cells, ``check_submission``), ``answer_policy`` and ``sandbox`` (the static check of answer cells,
the bubblewrap sandbox), ``rebuild`` (a submission rebuilt from the source with its checked answers),
``instructor`` (nbgrader release and grading; imports nbgrader lazily).
"""

__version__ = "0.1.0"
