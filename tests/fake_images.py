"""Small synthetic test images shared by the model and training tests."""
import numpy as np


def crack_like_images(count=20, size=16, seed=0):
    """Bright cells crossed by dark random lines, pixel values in [0, 1]."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    images = np.empty((count, size, size, 1), np.float32)
    for i in range(count):
        angle, offset = rng.uniform(0, np.pi), rng.uniform(-size / 3, size / 3)
        distance = np.abs((cols - size / 2) * np.cos(angle) + (rows - size / 2) * np.sin(angle) - offset)
        images[i, ..., 0] = 0.8 - 0.7 * np.exp(-distance ** 2) + rng.normal(0, 0.03, (size, size))
    return np.clip(images, 0, 1)
