"""ccwatch: watch contact-center availability and export it to Prometheus."""

__version__ = "0.1.0"
