"""MLPerf inference on the official LoadGen (``mlbench infer``).

``task`` is the benchmark-side contract; ``backends`` run a model (pytorch, onnxruntime, null); ``qsl`` and
``sut`` connect them to LoadGen; ``settings`` builds LoadGen's TestSettings; ``logs`` reads what LoadGen
wrote; ``runner`` makes one run and its result.json.
"""
