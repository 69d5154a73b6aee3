"""shardzoo: FSDP2 training core shared by every model package of the zoo."""

__version__ = "0.1.0"
