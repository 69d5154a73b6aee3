"""Benchmarks that print figures: our training step against the reference implementation in the same
process (`step`), and every op backend against its reference (`ops`), with the limit in view: achieved
FLOP/s as a fraction of the device's (`flops`, `shardzoo.device.peak_flops`). Results are JSON plus
a markdown table that names hardware, commit and settings (`report`). Nothing here is a timed test.
"""
