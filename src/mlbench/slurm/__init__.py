"""Scale-out: torchrun on one or several nodes, SLURM batch jobs, and scaling sweeps.

- :mod:`mlbench.slurm.launcher` starts torchrun for ``mlbench train --nproc/--nnodes`` and turns a failed rank
  into a message naming the rank and node, with the partial results kept.
- :mod:`mlbench.slurm.script` writes the sbatch script; :mod:`mlbench.slurm.jobs` submits, follows and waits
  for jobs; :mod:`mlbench.slurm.multirun` keeps the finished runs of a requeued several-run job and scores
  them together.
- :mod:`mlbench.slurm.scale` runs one benchmark at several sizes, nodes x processes per node, on this machine
  or as SLURM jobs (``mlbench scale``).
"""
