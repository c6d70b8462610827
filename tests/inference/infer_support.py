"""Constants shared by the inference tests (a uniquely named module: ``import conftest`` is ambiguous
when several test folders have one)."""

QUICK = ("--size", "tiny", "--quick", "--duration-s", "1", "--threads", "1")
