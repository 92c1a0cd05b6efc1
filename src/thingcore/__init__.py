"""thingcore: a self-hosted IoT Core with AWS IoT's model, on your own machines."""

__version__ = "0.1.0"
