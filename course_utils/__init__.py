"""course_utils: the plumbing of the course "CNNs part II - beyond image classification".

Modules, bottom to top (each imports only those above it in this list):
``config`` (run mode, device, seed, recorded figures), ``boxes`` (formats, IoU, NMS),
``data`` (synthetic shapes, COCO export), ``metrics`` (COCO and VOC AP, segmentation IoU),
``train`` (fit/evaluate loop, checkpoints),
``viz`` (drawing and plots).
"""

__version__ = "0.1.0"
