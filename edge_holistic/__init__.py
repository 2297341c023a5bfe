"""edge_holistic: whole-body landmarks on LiteRT for edge devices, published over MQTT."""

__version__ = "0.1.0"
