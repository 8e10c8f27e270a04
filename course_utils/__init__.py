"""course_utils: the plumbing of the course "CNNs part II - beyond image classification".

Modules, bottom to top (each imports only those above it in this list):
``config`` (run mode, device, seed, recorded figures), ``boxes`` (formats, IoU, NMS),
``data`` (synthetic shapes, real-dataset loaders, COCO export), ``metrics`` (COCO and VOC AP,
segmentation IoU), ``models`` (pretrained backbones, offline fallback), ``train`` (fit/evaluate
loop, checkpoints), ``viz`` (drawing, plots, widgets), ``grading`` (checks for autograder cells,
``check_submission``), ``instructor`` (nbgrader release and grading; imports nbgrader lazily).
"""

__version__ = "0.1.0"
