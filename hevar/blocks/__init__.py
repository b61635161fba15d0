"""Networks as stacks of blocks: each block family carries its stacked forward and backward
passes, its mean-field maps and its parameters (dense.py, residual.py, norm.py, dropout.py);
network.py names architectures and composes the blocks' theory."""
