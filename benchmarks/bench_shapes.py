"""How fast the synthetic shapes set generates, per preset (target: 1000 images of 128 px in < 5 s).

    python benchmarks/bench_shapes.py [--images 1000]

Prints seconds per 1000 images and the ratio to a reference: the time torchvision takes to
apply a ``v2.RandomResizedCrop`` + ``ColorJitter`` to the same images (a typical per-image data
cost in a training loop), measured in the same run.
"""

import argparse
import statistics
import time

import torch
from torchvision.transforms import v2

from course_utils.data import PRESETS, ShapesDataset


def median_time(fn, repeats=3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)

    images = [ShapesDataset(args.images, seed=0)[i][0] for i in range(min(args.images, 200))]
    augment = v2.Compose([v2.RandomResizedCrop(128, antialias=True), v2.ColorJitter(0.3, 0.3, 0.3)])
    t_ref = median_time(lambda: [augment(im) for im in images]) * args.images / len(images)
    print(f"reference: v2 crop+jitter on {args.images} images: {t_ref:.2f} s")
    print(f"{'preset':<8} {'s / ' + str(args.images) + ' images':>18} {'ms / image':>11} {'ratio to ref':>13}")
    for preset in PRESETS:
        ds = ShapesDataset(args.images, preset=preset, seed=0)
        t = median_time(lambda ds=ds: [ds[i] for i in range(len(ds))])
        print(f"{preset:<8} {t:>18.2f} {1000 * t / args.images:>11.2f} {t / t_ref:>13.2f}")


if __name__ == "__main__":
    main()
