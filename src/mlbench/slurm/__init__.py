"""Scale-out: torchrun on one or several nodes, SLURM batch jobs, and scaling sweeps.

- :mod:`mlbench.slurm.launcher` starts torchrun for ``mlbench train --nproc/--nnodes`` and turns a failed rank
  into a message naming the rank and node, with the partial results kept.
- :mod:`mlbench.slurm.script` writes the sbatch script; :mod:`mlbench.slurm.jobs` submits and follows jobs.
- :mod:`mlbench.slurm.scale` runs one benchmark at several process counts (``mlbench scale``).
"""
