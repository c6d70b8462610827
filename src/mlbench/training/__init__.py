"""The training harness shared by every benchmark."""
