"""The ResNet training recipe: SGD + label smoothing + warm-up/polynomial decay, top-1 (shared classification recipe)."""

from mlbench.training.classification import ClassificationRecipe

RECIPE = ClassificationRecipe()
