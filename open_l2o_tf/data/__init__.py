"""Data: sparse-recovery/Lasso files, the coherent dictionary, ALISTA's W, MNIST/CIFAR."""
