import re

from mlbench.training.metric_logger import MetricLogger


def test_progress_line_format():
    lines = []
    ml = MetricLogger(print_fn=lines.append, bar=False)

    def feed(i):
        ml.update(lr=0.1, loss=2.0 + i, classification=1.0)

    ml.on_print = feed
    for _ in ml.log_every(range(41), 20, "Epoch: [0]"):
        pass
    assert len(lines) == 4  # steps 0, 20, 40 and the total
    # Epoch: [0]  [20/41]  eta: 0:00:00  lr: 0.100000  loss: 22.0000 (11.0000)  classification: ...
    pat = (r"^Epoch: \[0\]  \[20/41\]  eta: \d+:\d\d:\d\d  lr: 0\.100000  loss: \d+\.\d{4} \(\d+\.\d{4}\)  "
           r"classification: 1\.0000 \(1\.0000\)  time: \d\.\d{4}  data: \d\.\d{4}$")
    assert re.match(pat, lines[1]), lines[1]
    assert lines[0].startswith("Epoch: [0]  [ 0/41]")
    assert "Total time" in lines[-1]
